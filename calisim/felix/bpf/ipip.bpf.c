// SPDX-License-Identifier: GPL-2.0
/* calisim's eBPF IPIP backend (see calisim/felix/ipip.py and the README's "IPIP backends").
 *
 * tunl0 is a persistent TUN device nobody reads: it anchors Calico's routes
 * `<remote block> via <remote host> dev tunl0 onlink` and the tunnel address.
 *
 * tunl_encap (tc egress on tunl0): the kernel has routed an inner packet into tunl0.
 *   Find that route's gateway (the remote host) with bpf_fib_lookup, then how to reach the
 *   remote host (uplink, next hop, and our preferred source address: BPF_FIB_LOOKUP_SRC),
 *   add the outer IPv4 header (protocol 4) and an Ethernet header (bpf_redirect_neigh drops
 *   packets without one), and redirect to the uplink, whose neighbour code fills the MACs.
 * tunl_decap (tc ingress on the uplink): protocol-4 packets addressed to this host lose their
 *   outer header and go on as the inner packet; everything else passes untouched.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#ifndef BPF_F_ADJ_ROOM_DECAP_L3_IPV4
#define BPF_F_ADJ_ROOM_DECAP_L3_IPV4 (1ULL << 7) /* kernel >= 6.3; older uapi headers lack it */
#endif

#define AF_INET 2
#define OUTER_TTL 64
#define IP_DF 0x4000

static __always_inline __u16 ip_checksum(struct iphdr *ip)
{
	__u32 sum = 0;
	__u16 *word = (__u16 *)ip;

#pragma unroll
	for (int i = 0; i < (int)sizeof(*ip) / 2; i++)
		sum += word[i];
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)~sum;
}

SEC("tc")
int tunl_encap(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct iphdr *inner = data;
	struct bpf_fib_lookup fib = {};
	struct iphdr outer = {};
	struct ethhdr eth = {};
	__be32 remote_host;
	int rc;

	if (skb->protocol != bpf_htons(ETH_P_IP) || (void *)(inner + 1) > data_end)
		return TC_ACT_SHOT;

	/* The route that brought the packet here: its gateway is the remote host. */
	fib.family = AF_INET;
	fib.ipv4_src = inner->saddr;
	fib.ipv4_dst = inner->daddr;
	fib.ifindex = skb->ifindex; /* tot_len 0: the kernel checks the skb itself, GSO-aware */
	rc = bpf_fib_lookup(skb, &fib, sizeof(fib), BPF_FIB_LOOKUP_SKIP_NEIGH);
	if (rc != BPF_FIB_LKUP_RET_SUCCESS || fib.ifindex != skb->ifindex || fib.ipv4_dst == inner->daddr)
		return TC_ACT_SHOT; /* not a `via <host> dev tunl0` route */
	remote_host = fib.ipv4_dst;

	/* How this host reaches the remote host, and from which of its addresses. */
	outer.version = 4;
	outer.ihl = 5;
	outer.tos = inner->tos;
	outer.tot_len = bpf_htons(bpf_ntohs(inner->tot_len) + sizeof(outer));
	outer.frag_off = inner->frag_off & bpf_htons(IP_DF);
	outer.ttl = OUTER_TTL;
	outer.protocol = IPPROTO_IPIP;
	__builtin_memset(&fib, 0, sizeof(fib));
	fib.family = AF_INET;
	fib.ipv4_dst = remote_host;
	fib.ifindex = skb->ifindex;
	rc = bpf_fib_lookup(skb, &fib, sizeof(fib), BPF_FIB_LOOKUP_SKIP_NEIGH | BPF_FIB_LOOKUP_SRC);
	if (rc != BPF_FIB_LKUP_RET_SUCCESS || fib.ifindex == skb->ifindex)
		return TC_ACT_SHOT;
	outer.saddr = fib.ipv4_src;
	outer.daddr = remote_host;
	outer.check = ip_checksum(&outer);

	if (bpf_skb_adjust_room(skb, sizeof(outer), BPF_ADJ_ROOM_MAC, BPF_F_ADJ_ROOM_ENCAP_L3_IPV4))
		return TC_ACT_SHOT;
	if (bpf_skb_change_head(skb, sizeof(eth), 0))
		return TC_ACT_SHOT;
	eth.h_proto = bpf_htons(ETH_P_IP);
	if (bpf_skb_store_bytes(skb, 0, &eth, sizeof(eth), 0) ||
	    bpf_skb_store_bytes(skb, sizeof(eth), &outer, sizeof(outer), 0))
		return TC_ACT_SHOT;

	struct bpf_redir_neigh next_hop = {.nh_family = AF_INET, .ipv4_nh = fib.ipv4_dst};
	return bpf_redirect_neigh(fib.ifindex, &next_hop, sizeof(next_hop), 0);
}

SEC("tc")
int tunl_decap(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct iphdr *outer = (void *)(eth + 1);
	struct bpf_fib_lookup fib = {};

	if ((void *)(outer + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP) ||
	    outer->protocol != IPPROTO_IPIP || outer->ihl != 5)
		return TC_ACT_OK;

	/* Only packets for this host: the FIB says a local destination is not forwarded. */
	fib.family = AF_INET;
	fib.ipv4_src = outer->saddr;
	fib.ipv4_dst = outer->daddr;
	fib.ifindex = skb->ifindex;
	if (bpf_fib_lookup(skb, &fib, sizeof(fib), BPF_FIB_LOOKUP_SKIP_NEIGH) != BPF_FIB_LKUP_RET_NOT_FWDED)
		return TC_ACT_OK;

	if (bpf_skb_adjust_room(skb, -(__s32)sizeof(*outer), BPF_ADJ_ROOM_MAC,
				BPF_F_ADJ_ROOM_DECAP_L3_IPV4 | BPF_F_ADJ_ROOM_FIXED_GSO))
		return TC_ACT_SHOT;
	return TC_ACT_OK;
}

char LICENSE[] SEC("license") = "GPL";
