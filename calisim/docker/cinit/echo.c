/* The `workload` image's echo services (calisim/docker/images.py): TCP 80 and UDP 69 over IPv4 and
 * IPv6 (one dual-stack socket each), run by dockerd in the container's network namespace until
 * killed.  C, not Python, because one runs beside every workload container.
 *
 *   echo     (no options: the ports are the ones calisim.probes tcp and udp ask)
 */
#define _GNU_SOURCE
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#define TCP_PORT 80
#define UDP_PORT 69
#define MAX_CONNECTIONS 1024

static char buffer[65536];

static int dual_stack_socket(int type, int port)
{
    int fd = socket(AF_INET6, type | SOCK_CLOEXEC, 0), no = 0, yes = 1;
    struct sockaddr_in6 address = {.sin6_family = AF_INET6, .sin6_port = htons(port), .sin6_addr = in6addr_any};
    if (fd < 0 || setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &no, sizeof(no)) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes)) != 0 ||
        bind(fd, (struct sockaddr *)&address, sizeof(address)) != 0 || (type == SOCK_STREAM && listen(fd, 128) != 0)) {
        fprintf(stderr, "echo: port %d: ", port);
        perror(NULL);
        exit(1);
    }
    return fd;
}

static void echo_datagram(int fd)
{
    struct sockaddr_in6 peer;
    socklen_t length = sizeof(peer);
    ssize_t got = recvfrom(fd, buffer, sizeof(buffer), 0, (struct sockaddr *)&peer, &length);
    if (got >= 0)
        sendto(fd, buffer, (size_t)got, MSG_NOSIGNAL, (struct sockaddr *)&peer, length);
}

/* What came on a connection, sent back whole; 0 once the peer closed it, or failed, or did not
 * read its echo for a second (SO_SNDTIMEO: one peer must not stall every other). */
static int echo_stream(int fd)
{
    ssize_t got = recv(fd, buffer, sizeof(buffer), 0);
    for (ssize_t sent = 0, now; sent < got; sent += now)
        if ((now = send(fd, buffer + sent, (size_t)(got - sent), MSG_NOSIGNAL)) < 0)
            return 0;
    return got > 0;
}

int main(void)
{
    struct pollfd watched[MAX_CONNECTIONS + 2] = {
        {.fd = dual_stack_socket(SOCK_DGRAM, UDP_PORT), .events = POLLIN},
        {.fd = dual_stack_socket(SOCK_STREAM, TCP_PORT), .events = POLLIN}};
    nfds_t count = 2;
    for (;;) {
        if (poll(watched, count, -1) < 0)
            continue;
        if (watched[0].revents)
            echo_datagram(watched[0].fd);
        for (nfds_t i = 2; i < count; i++) {
            if (watched[i].revents && !echo_stream(watched[i].fd)) {
                close(watched[i].fd);
                watched[i--] = watched[--count];
            }
        }
        if (watched[1].revents) {
            int connection = accept4(watched[1].fd, NULL, NULL, SOCK_CLOEXEC);
            struct timeval patience = {.tv_sec = 1};
            if (connection >= 0 && count < MAX_CONNECTIONS + 2 &&
                setsockopt(connection, SOL_SOCKET, SO_SNDTIMEO, &patience, sizeof(patience)) == 0)
                watched[count++] = (struct pollfd){.fd = connection, .events = POLLIN};
            else if (connection >= 0)
                close(connection);
        }
    }
}
