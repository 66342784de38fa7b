/* The `calicoctl` on every emulated host's PATH (the run's bin/calicoctl): the client of the run's
 * node zygote (calisim/node/zygote.py).  It asks the zygote, which has calicoctl's modules imported,
 * to fork `python -m calisim.calicoctl ARGS` into this process's namespaces with its arguments,
 * environment, working directory and standard streams; passes SIGINT, SIGTERM, SIGHUP and SIGQUIT
 * on to it (one that comes before its pid is known, once it is); and exits with its code, or dies
 * of the signal it died of.  Without a zygote ($CALISIM_NODE_ZYGOTE unset or empty, or it does not
 * answer, or it refuses) it executes the installed calicoctl (INSTALLED_CALICOCTL, the .venv's entry
 * point) without that variable.
 *
 * C, static, because a cluster bring-up runs one per host and every `calicoctl apply` waits for it:
 * the interpreter's start alone (python -I -S, importing nothing) took 16 ms of CPU and 20-67 ms
 * under load.  The protocol is calisim.node.zygote_client's (one connection, one request, answers
 * `pid N` then `exit CODE`); the request is written in the subset of Python's marshal format that
 * the zygote's marshal.loads reads in any version: a dict of str (TYPE_UNICODE), list and int.  The
 * strings are sent as Python has them: bytes that are not UTF-8 as surrogateescape's lone surrogates
 * (encoded surrogatepass, as marshal writes them), and the environment as os.environ reads it (an
 * entry without '=' left out, a name's first entry kept), so the zygote's os.environ and sys.argv
 * get back the very bytes given here.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#ifndef INSTALLED_CALICOCTL
#error "INSTALLED_CALICOCTL (the .venv's bin/calicoctl) must be defined: the Makefile does"
#endif

#define ZYGOTE_ENV "CALISIM_NODE_ZYGOTE"
#define ANSWER_TIMEOUT 30 /* seconds, for the zygote's `pid N` */
#define MAX_PENDING 32

extern char **environ;

static const int forwarded_signals[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};
static volatile sig_atomic_t forked_pid;  /* 0 until the zygote answers */
static volatile sig_atomic_t pending[MAX_PENDING], pending_count;  /* signals that came before it */

static void forward(int signum)
{
    int saved = errno;
    if (forked_pid > 0)
        kill(forked_pid, signum);
    else if (pending_count < MAX_PENDING)
        pending[pending_count++] = signum;
    errno = saved;
}

static void die_of(int signum)
{
    sigset_t set;
    signal(signum, SIG_DFL);
    sigemptyset(&set);
    sigaddset(&set, signum);
    sigprocmask(SIG_UNBLOCK, &set, NULL);
    kill(getpid(), signum);
}

/* -- the environment as os.environ has it ----------------------------------------------------- */

static size_t name_length(const char *entry)
{
    const char *equals = strchr(entry, '=');
    return equals ? (size_t)(equals - entry) : 0;
}

/* An entry os.environ keeps: it has '=', and no earlier entry has its name. */
static int kept(char **entry)
{
    size_t length = name_length(*entry);
    if (!strchr(*entry, '='))
        return 0;
    for (char **earlier = environ; earlier < entry; earlier++)
        if (strchr(*earlier, '=') && name_length(*earlier) == length && !memcmp(*earlier, *entry, length))
            return 0;
    return 1;
}

static int named(const char *entry, const char *name)
{
    size_t length = strlen(name);
    return name_length(entry) == length && strchr(entry, '=') && !memcmp(entry, name, length);
}

/* -- the request, in marshal's format ---------------------------------------------------------- */

struct buffer {
    unsigned char *data;
    size_t length, capacity;
};

static void put(struct buffer *buffer, const void *data, size_t size)
{
    if (buffer->length + size > buffer->capacity) {
        buffer->capacity = (buffer->length + size) * 2 + 4096;
        buffer->data = realloc(buffer->data, buffer->capacity);
        if (!buffer->data) {
            fputs("calicoctl: out of memory\n", stderr);
            exit(1);
        }
    }
    memcpy(buffer->data + buffer->length, data, size);
    buffer->length += size;
}

static void put_u32(struct buffer *buffer, uint32_t value)  /* marshal's integers: little-endian */
{
    unsigned char bytes[4] = {value & 0xff, (value >> 8) & 0xff, (value >> 16) & 0xff, value >> 24};
    put(buffer, bytes, sizeof(bytes));
}

static void put_int(struct buffer *buffer, int32_t value)
{
    put(buffer, "i", 1);
    put_u32(buffer, (uint32_t)value);
}

static void put_list(struct buffer *buffer, uint32_t count)  /* its count items follow */
{
    put(buffer, "[", 1);
    put_u32(buffer, count);
}

/* The length of the well-formed UTF-8 sequence at text (Python's strict decoder's), or 0. */
static size_t utf8_sequence(const unsigned char *text, size_t left)
{
    unsigned char first = text[0];
    size_t length = first < 0x80 ? 1 : first >= 0xc2 && first <= 0xdf ? 2 : first >= 0xe0 && first <= 0xef ? 3
                    : first >= 0xf0 && first <= 0xf4 ? 4 : 0;
    unsigned char low = first == 0xe0 ? 0xa0 : first == 0xf0 ? 0x90 : 0x80;  /* no overlong forms, */
    unsigned char high = first == 0xed ? 0x9f : first == 0xf4 ? 0x8f : 0xbf;  /* surrogates, > U+10FFFF */
    if (length == 0 || length > left)
        return 0;
    for (size_t i = 1; i < length; i++)
        if (text[i] < (i == 1 ? low : 0x80) || text[i] > (i == 1 ? high : 0xbf))
            return 0;
    return length;
}

/* A str of these bytes (os.fsdecode's: a byte that is not UTF-8 as U+DC80-U+DCFF). */
static void put_bytes_as_str(struct buffer *buffer, const char *text, size_t size)
{
    size_t length_at;
    put(buffer, "u", 1);
    length_at = buffer->length;
    put_u32(buffer, 0);
    for (size_t at = 0; at < size;) {
        size_t sequence = utf8_sequence((const unsigned char *)text + at, size - at);
        if (sequence) {
            put(buffer, text + at, sequence);
            at += sequence;
        } else {
            unsigned char byte = (unsigned char)text[at++];
            unsigned char escaped[3] = {0xed, 0xb0 | (byte >> 6), 0x80 | (byte & 0x3f)};
            put(buffer, escaped, sizeof(escaped));
        }
    }
    size = buffer->length - length_at - 4;
    for (int i = 0; i < 4; i++)
        buffer->data[length_at + i] = (size >> (8 * i)) & 0xff;
}

static void put_str(struct buffer *buffer, const char *text)
{
    put_bytes_as_str(buffer, text, strlen(text));
}

/* {"module": ..., "args": [...], "env": {...}, "cwd": ..., "fds": [0, 1, 2], "namespaces_of": 0};
 * 0 when the working directory has gone (then no zygote is asked, as in the Python client). */
static int build_request(struct buffer *request, int argc, char **argv)
{
    char *cwd = getcwd(NULL, 0);
    if (!cwd)
        return 0;
    put(request, "{", 1);
    put_str(request, "module");
    put_str(request, "calisim.calicoctl");
    put_str(request, "args");
    put_list(request, (uint32_t)(argc - 1));
    for (int i = 1; i < argc; i++)
        put_str(request, argv[i]);
    put_str(request, "env");
    put(request, "{", 1);
    for (char **entry = environ; *entry; entry++)
        if (kept(entry)) {
            put_bytes_as_str(request, *entry, name_length(*entry));
            put_str(request, *entry + name_length(*entry) + 1);
        }
    put(request, "0", 1);
    put_str(request, "cwd");
    put_str(request, cwd);
    put_str(request, "fds");
    put_list(request, 3);
    for (int fd = 0; fd < 3; fd++)
        put_int(request, fd);
    put_str(request, "namespaces_of");
    put_int(request, 0);
    put(request, "0", 1);
    free(cwd);
    return 1;
}

/* -- the connection ---------------------------------------------------------------------------- */

struct lines {
    int fd;
    char data[4096];
    size_t length;
};

/* The next line (without its newline; what is left at the end); 0 when a read fails. */
static int read_line(struct lines *lines, char *line, size_t size)
{
    char *newline;
    while (!(newline = memchr(lines->data, '\n', lines->length)) && lines->length < sizeof(lines->data)) {
        ssize_t got = recv(lines->fd, lines->data + lines->length, sizeof(lines->data) - lines->length, 0);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            return 0;
        if (got == 0)
            break;
        lines->length += (size_t)got;
    }
    size_t length = newline ? (size_t)(newline - lines->data) : lines->length;
    size_t used = newline ? length + 1 : length;
    snprintf(line, size, "%.*s", (int)length, lines->data);
    memmove(lines->data, lines->data + used, lines->length - used);
    lines->length -= used;
    return 1;
}

static int set_timeout(int fd, int option, int seconds)
{
    struct timeval timeout = {.tv_sec = seconds};
    return setsockopt(fd, SOL_SOCKET, option, &timeout, sizeof(timeout));
}

static int send_request(int fd, const struct buffer *request)
{
    int fds[3] = {0, 1, 2};
    union {
        char space[CMSG_SPACE(sizeof(fds))];
        struct cmsghdr align;
    } control = {0};
    struct iovec data = {.iov_base = request->data, .iov_len = request->length};
    struct msghdr message = {.msg_iov = &data, .msg_iovlen = 1, .msg_control = control.space,
                             .msg_controllen = sizeof(control.space)};
    struct cmsghdr *header = CMSG_FIRSTHDR(&message);
    header->cmsg_level = SOL_SOCKET;
    header->cmsg_type = SCM_RIGHTS;
    header->cmsg_len = CMSG_LEN(sizeof(fds));
    memcpy(CMSG_DATA(header), fds, sizeof(fds));
    ssize_t sent;
    while ((sent = sendmsg(fd, &message, MSG_NOSIGNAL)) < 0 && errno == EINTR)
        ;
    for (size_t at = sent < 0 ? request->length : (size_t)sent; sent >= 0 && at < request->length; at += sent)
        while ((sent = send(fd, request->data + at, request->length - at, MSG_NOSIGNAL)) < 0 && errno == EINTR)
            ;
    return sent >= 0 && shutdown(fd, SHUT_WR) == 0;  /* the request ends here */
}

/* Connected to the zygote at path with the request sent, or -1. */
static int ask(const char *path, const struct buffer *request)
{
    struct sockaddr_un address = {.sun_family = AF_UNIX};
    int fd, connected;
    if (strlen(path) >= sizeof(address.sun_path))
        return -1;
    strcpy(address.sun_path, path);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (set_timeout(fd, SO_SNDTIMEO, ANSWER_TIMEOUT) != 0 || set_timeout(fd, SO_RCVTIMEO, ANSWER_TIMEOUT) != 0) {
        close(fd);
        return -1;
    }
    while ((connected = connect(fd, (struct sockaddr *)&address, sizeof(address))) != 0 && errno == EINTR)
        ;
    if (connected != 0 || !send_request(fd, request)) {
        close(fd);
        return -1;
    }
    return fd;
}

/* The pid the zygote forked, or 0 (no answer in time, or a refusal). */
static pid_t forked(struct lines *answers)
{
    char line[64];
    long pid;
    if (!read_line(answers, line, sizeof(line)) || strncmp(line, "pid ", 4) != 0)
        return 0;
    pid = strtol(line + 4, NULL, 10);
    return pid > 0 ? (pid_t)pid : 0;
}

/* The forked command's pid known, the signals that came before it are sent on. */
static void forward_pending(pid_t pid)
{
    sigset_t forwarded, previous;
    sigemptyset(&forwarded);
    for (size_t i = 0; i < sizeof(forwarded_signals) / sizeof(*forwarded_signals); i++)
        sigaddset(&forwarded, forwarded_signals[i]);
    sigprocmask(SIG_BLOCK, &forwarded, &previous);
    forked_pid = pid;
    for (int i = 0; i < pending_count; i++)
        kill(pid, pending[i]);
    sigprocmask(SIG_SETMASK, &previous, NULL);
}

/* Its exit code (waitstatus_to_exitcode's: -N when a signal N ended it; SIGKILL's when the zygote
 * went without saying). */
static int exit_code(struct lines *answers)
{
    char line[64];
    set_timeout(answers->fd, SO_RCVTIMEO, 0);
    if (!read_line(answers, line, sizeof(line)) || strncmp(line, "exit ", 5) != 0)
        return -SIGKILL;
    return (int)strtol(line + 5, NULL, 10);
}

#define NOT_FORKED 0x100  /* no exit code: the caller runs the installed calicoctl itself */

/* `calicoctl ARGS` forked by the zygote at path: its exit status (this process dies first of the
 * signal that ended it), or NOT_FORKED (also dies first of a signal that came meanwhile). */
static int forked_by_zygote(const char *path, int argc, char **argv)
{
    struct buffer request = {0};
    struct lines answers = {.fd = -1};
    pid_t pid;
    int code;
    if (!build_request(&request, argc, argv) || (answers.fd = ask(path, &request)) < 0 || !(pid = forked(&answers))) {
        if (answers.fd >= 0)
            close(answers.fd);
        if (pending_count)
            die_of(pending[0]);
        return NOT_FORKED;
    }
    free(request.data);
    forward_pending(pid);
    code = exit_code(&answers);
    if (code < 0)
        die_of(-code);
    return code & 0xff;  /* sys.exit's status for a code it could not die of */
}

static void run_installed(char **argv)
{
    size_t count = 0;
    for (char **entry = environ; *entry; entry++)
        count++;
    char **environment = malloc(sizeof(char *) * (count + 1)), **end = environment;
    if (!environment) {
        fputs("calicoctl: out of memory\n", stderr);
        exit(1);
    }
    for (char **entry = environ; *entry; entry++)
        if (kept(entry) && !named(*entry, ZYGOTE_ENV))  /* not asked twice */
            *end++ = *entry;
    *end = NULL;
    argv[0] = INSTALLED_CALICOCTL;
    execve(argv[0], argv, environment);
    fprintf(stderr, "calicoctl: cannot run the installed calicoctl %s: %s\n", argv[0], strerror(errno));
    exit(1);
}

int main(int argc, char **argv)
{
    const char *path = getenv(ZYGOTE_ENV);
    if (path && *path) {
        struct sigaction action = {.sa_handler = forward, .sa_flags = SA_RESTART};
        for (size_t i = 0; i < sizeof(forwarded_signals) / sizeof(*forwarded_signals); i++)
            sigaction(forwarded_signals[i], &action, NULL);
        int code = forked_by_zygote(path, argc, argv);
        if (code != NOT_FORKED)
            return code;
    }
    run_installed(argv);
}
