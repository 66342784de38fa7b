// SPDX-License-Identifier: GPL-2.0
/* calisim's link impairments where the kernel has no sch_netem (see calisim/emulation/faults/bpf.py).
 *
 * One copy of this object is loaded per impaired interface (bpftool prog loadall ... pinmaps),
 * so each interface has its own maps; impair_ingress and impair_egress are attached to its
 * clsact qdisc and share them.
 *
 * config[0]: thresholds on bpf_get_prandom_u32() (0 = never, 0xffffffff = always) for loss,
 *   corruption (one payload byte flipped: the receiver's checksum drops the packet) and
 *   duplication (a clone sent the same way), plus drop_all (a partition from everything).
 * blocked: a partition from some peers: an IPv4 address with a TCP port (port 0 = any port),
 *   matched against the packet's source and destination; or a MAC address (the peer's uplink,
 *   for traffic between workloads on one segment, whose IP addresses are not the hosts').
 *
 * Packets left alone return TC_ACT_UNSPEC, so filters attached after this one still run.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/tcp.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#define CLONE_MARK 0x0ca11500 /* our own duplicate coming round again: let it through */

struct impairment {
	__u32 loss;
	__u32 corrupt;
	__u32 duplicate;
	__u32 drop_all;
};

struct peer {
	__u32 addr;  /* IPv4, network order; 0 for a MAC entry */
	__u16 port;  /* TCP port, host order; 0 = any */
	__u8 mac[6]; /* all zero for an address entry */
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct impairment);
} config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct peer);
	__type(value, __u8);
} blocked SEC(".maps");

static __always_inline int chance(__u32 threshold)
{
	return threshold && bpf_get_prandom_u32() <= threshold;
}

static __always_inline int is_blocked_mac(const __u8 *mac)
{
	struct peer key = {};

	__builtin_memcpy(key.mac, mac, 6);
	return bpf_map_lookup_elem(&blocked, &key) != 0;
}

static __always_inline int is_blocked_addr(__u32 addr, __u16 port)
{
	struct peer key = { .addr = addr };

	if (bpf_map_lookup_elem(&blocked, &key))
		return 1;
	if (!port)
		return 0;
	key.port = port;
	return bpf_map_lookup_elem(&blocked, &key) != 0;
}

static __always_inline int partitioned(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data, *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip;
	__u16 sport = 0, dport = 0;

	if ((void *)(eth + 1) > end)
		return 0;
	if (is_blocked_mac(eth->h_source) || is_blocked_mac(eth->h_dest))
		return 1;
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return 0;
	ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > end)
		return 0;
	if (ip->protocol == IPPROTO_TCP && ip->ihl == 5) {
		struct tcphdr *tcp = (void *)(ip + 1);

		if ((void *)(tcp + 1) <= end) {
			sport = bpf_ntohs(tcp->source);
			dport = bpf_ntohs(tcp->dest);
		}
	}
	return is_blocked_addr(ip->saddr, sport) || is_blocked_addr(ip->daddr, dport);
}

static __always_inline int impair(struct __sk_buff *skb, __u64 redirect_flags)
{
	__u32 zero = 0;
	struct impairment *how = bpf_map_lookup_elem(&config, &zero);

	if (skb->mark == CLONE_MARK) {
		skb->mark = 0;
		return TC_ACT_UNSPEC;
	}
	if (!how)
		return TC_ACT_UNSPEC;
	if (how->drop_all || partitioned(skb) || chance(how->loss))
		return TC_ACT_SHOT;
	if (chance(how->corrupt) && skb->len > ETH_HLEN + sizeof(struct iphdr)) {
		__u32 offset = skb->len - 1;
		__u8 byte;

		if (bpf_skb_load_bytes(skb, offset, &byte, 1) == 0) {
			byte ^= 0xff;
			bpf_skb_store_bytes(skb, offset, &byte, 1, 0);
		}
	}
	if (chance(how->duplicate)) {
		__u32 mark = skb->mark;

		skb->mark = CLONE_MARK;
		bpf_clone_redirect(skb, skb->ifindex, redirect_flags);
		skb->mark = mark;
	}
	return TC_ACT_UNSPEC;
}

SEC("tc")
int impair_ingress(struct __sk_buff *skb)
{
	return impair(skb, BPF_F_INGRESS);
}

SEC("tc")
int impair_egress(struct __sk_buff *skb)
{
	return impair(skb, 0);
}

char LICENSE[] SEC("license") = "GPL";
