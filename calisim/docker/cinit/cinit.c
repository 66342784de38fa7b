/* A container's runtime (runc's part) and shim (containerd-shim's part), started by the emulated
 * dockerd (calisim/docker/runtime.py) with a control socket.  C, not Python, because one runs
 * beside every container for as long as it runs: an interpreter there cost ~5 MiB a container.
 *
 *   cinit --control FD --hostname NAME --root MERGED UPPER WORK [--lower DIR]... [--file NAME SOURCE]...
 *         [--mount SOURCE DESTINATION rw|ro]... [--env K=V]... [--user UID GID] [--group GID]...
 *         [--network host] [--workdir DIR] [--tty --console HEIGHT WIDTH] [--held FD]...
 *         [--runtime PATH] [--exit PATH] -- COMMAND [ARG]...
 *
 * It unshares mount, UTS, IPC, network (not with --network host) and PID namespaces and forks the
 * container's PID 1, which mounts the image's layers (--lower, top first) under a writable
 * overlayfs layer, /proc, a minimal /dev with its own devpts, a read-only /sys, Docker's
 * /etc/hosts, /etc/hostname and /etc/resolv.conf (--file) and the -v mounts, sets the hostname,
 * brings up lo and pivots into the root.  It then tells the daemon it is ready (with the pty's
 * master when the container has a TTY), waits for "go" (the daemon connects its network first, as
 * Docker does before the process starts) and execs the command.
 *
 * Control messages (JSON, SOCK_SEQPACKET): {"pid": N} from the first process, {"ready": true} from
 * PID 1, "go" from the daemon, {"error": "...", "code": N} if the command cannot be run; EOF after
 * "go" means the command is running.
 *
 * The first process stays outside the new PID namespace and is the container's shim: it passes
 * SIGINT, SIGTERM and SIGHUP on to PID 1, keeps the output pipes' read ends (--held) or a copy of
 * the pty master open while the container runs, so that the container outlives its dockerd,
 * writes --runtime (its PID, PID 1's, those descriptors) for a dockerd that adopts the container,
 * waits for PID 1 and writes its status (128+N after signal N) to --exit, then exits with it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <net/if.h>
#include <pty.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#define DEFAULT_PATH "/bin:/usr/bin" /* Python's os.defpath, as the runtime used before */

struct bind { const char *source, *destination; int writable; };

struct spec {
    int control, network_private, tty, has_user;
    unsigned short console[2]; /* height, width */
    const char *hostname, *merged, *upper, *work, *workdir, *runtime, *exit_path;
    const char **lowers, **file_names, **file_sources, **env;
    struct bind *mounts;
    gid_t *groups;
    int *held;
    int n_lowers, n_files, n_env, n_mounts, n_groups, n_held;
    uid_t uid;
    gid_t gid;
    char **cmd;
};

static int control_fd = -1; /* where errors go; -1 once the daemon has no more use for them */
static pid_t container_pid;

/* One JSON message on the control socket (MSG_NOSIGNAL: a daemon that died is no reason to). */
static void send_json(int fd, const char *text, int passed_fd)
{
    struct iovec data = {.iov_base = (void *)text, .iov_len = strlen(text)};
    union { char buffer[CMSG_SPACE(sizeof(int))]; struct cmsghdr align; } rights;
    struct msghdr message = {.msg_iov = &data, .msg_iovlen = 1};
    if (passed_fd >= 0) {
        message.msg_control = rights.buffer;
        message.msg_controllen = sizeof(rights.buffer);
        struct cmsghdr *header = CMSG_FIRSTHDR(&message);
        header->cmsg_level = SOL_SOCKET;
        header->cmsg_type = SCM_RIGHTS;
        header->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(header), &passed_fd, sizeof(int));
    }
    sendmsg(fd, &message, MSG_NOSIGNAL);
}

/* text as a JSON string's contents: quotes, backslashes and control characters escaped. */
static void json_escape(char *out, size_t size, const char *text)
{
    size_t used = 0;
    for (; *text && used + 7 < size; text++) {
        unsigned char c = (unsigned char)*text;
        if (c == '"' || c == '\\')
            used += snprintf(out + used, size - used, "\\%c", c);
        else if (c < 0x20)
            used += snprintf(out + used, size - used, "\\u%04x", c);
        else
            out[used++] = (char)c;
    }
    out[used] = '\0';
}

/* Tell the daemon why the container cannot run (Docker's exit code for it) and end. */
static void __attribute__((noreturn)) refuse(int code, const char *format, ...)
{
    char reason[2048], escaped[4200], message[4300];
    va_list arguments;
    va_start(arguments, format);
    vsnprintf(reason, sizeof(reason), format, arguments);
    va_end(arguments);
    json_escape(escaped, sizeof(escaped), reason);
    snprintf(message, sizeof(message), "{\"error\": \"%s\", \"code\": %d}", escaped, code);
    if (control_fd >= 0)
        send_json(control_fd, message, -1);
    else
        fprintf(stderr, "cinit: %s\n", reason);
    _exit(code);
}

/* A failed system call: refused with "WHAT: strerror" (code 128, as runc's own failures). */
static void check(int result, const char *what, const char *path)
{
    if (result != 0)
        refuse(128, "%s %s: %s", what, path, strerror(errno));
}

static void mount_at(const char *source, const char *target, const char *fstype, unsigned long flags,
                     const char *data)
{
    check(mount(source, target, fstype, flags, data), "mount", target);
}

static char *join(const char *first, const char *second)
{
    size_t length = strlen(first);
    char *path = malloc(length + strlen(second) + 1);
    if (!path)
        refuse(128, "out of memory");
    strcpy(path, first);
    strcpy(path + length, second);
    return path;
}

static int exists(const char *path)
{
    struct stat status;
    return stat(path, &status) == 0;
}

static int is_directory(const char *path)
{
    struct stat status;
    return stat(path, &status) == 0 && S_ISDIR(status.st_mode);
}

/* mkdir -p */
static void make_directories(const char *path)
{
    char *copy = join(path, "");
    for (char *slash = strchr(copy + 1, '/');; slash = strchr(slash + 1, '/')) {
        if (slash)
            *slash = '\0';
        if (mkdir(copy, 0777) != 0 && errno != EEXIST)
            refuse(128, "mkdir %s: %s", copy, strerror(errno));
        if (!slash)
            break;
        *slash = '/';
    }
    free(copy);
}

static void make_empty_file(const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    check(fd < 0 ? -1 : 0, "create", path);
    close(fd);
}

/* A host path at destination in the root (made there, in the writable layer, if missing): a
 * directory's whole tree (MS_REC), read-only unless writable, as runc binds Docker's mounts. */
static void bind_in(const char *root, const struct bind *bind)
{
    char *target = join(root, bind->destination);
    if (is_directory(bind->source)) {
        make_directories(target);
    } else if (!exists(target)) {
        char *parent = join(target, "");
        *strrchr(parent, '/') = '\0';
        make_directories(parent);
        free(parent);
        make_empty_file(target);
    }
    mount_at(bind->source, target, NULL, MS_BIND | MS_REC, NULL);
    if (!bind->writable)
        mount_at(bind->source, target, NULL, MS_BIND | MS_REC | MS_REMOUNT | MS_RDONLY, NULL);
    free(target);
}

static const struct { const char *name; unsigned major, minor; } DEVICES[] = {
    {"null", 1, 3}, {"zero", 1, 5}, {"full", 1, 7}, {"random", 1, 8}, {"urandom", 1, 9}, {"tty", 5, 0}};
static const char *const DEV_LINKS[][2] = {
    {"ptmx", "pts/ptmx"}, {"fd", "/proc/self/fd"}, {"stdin", "/proc/self/fd/0"},
    {"stdout", "/proc/self/fd/1"}, {"stderr", "/proc/self/fd/2"}};

/* A minimal /dev: a tmpfs with the usual devices, a devpts of the container's own and /dev/shm. */
static void make_dev(const char *root)
{
    char *dev = join(root, "/dev");
    mount_at("tmpfs", dev, "tmpfs", MS_NOSUID, "mode=755,size=65536k");
    for (size_t i = 0; i < sizeof(DEVICES) / sizeof(DEVICES[0]); i++) {
        char *node = join(dev, "/");
        char *path = join(node, DEVICES[i].name);
        check(mknod(path, 0666 | S_IFCHR, makedev(DEVICES[i].major, DEVICES[i].minor)), "mknod", path);
        check(chmod(path, 0666), "chmod", path);
        free(path);
        free(node);
    }
    char *pts = join(dev, "/pts"), *shm = join(dev, "/shm");
    check(mkdir(pts, 0777), "mkdir", pts);
    check(mkdir(shm, 0777), "mkdir", shm);
    mount_at("devpts", pts, "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620,gid=5");
    mount_at("shm", shm, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=1777,size=65536k");
    for (size_t i = 0; i < sizeof(DEV_LINKS) / sizeof(DEV_LINKS[0]); i++) {
        char *node = join(dev, "/");
        char *path = join(node, DEV_LINKS[i][0]);
        check(symlink(DEV_LINKS[i][1], path), "symlink", path);
        free(path);
        free(node);
    }
    free(pts);
    free(shm);
    free(dev);
}

/* The container's filesystem, mounted at spec->merged in this (new) mount namespace. */
static void make_root(const struct spec *spec)
{
    const char *root = spec->merged;
    check(mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL), "make", "/ private");
    size_t length = 64 + strlen(spec->upper) + strlen(spec->work);
    for (int i = 0; i < spec->n_lowers; i++)
        length += strlen(spec->lowers[i]) + 1;
    char *options = malloc(length), *end = options;
    end += sprintf(end, "lowerdir=");
    for (int i = 0; i < spec->n_lowers; i++)
        end += sprintf(end, "%s%s", i ? ":" : "", spec->lowers[i]);
    sprintf(end, ",upperdir=%s,workdir=%s", spec->upper, spec->work);
    mount_at("overlay", root, "overlay", 0, options);
    free(options);
    char *proc = join(root, "/proc"), *sys = join(root, "/sys");
    mount_at("proc", proc, "proc", MS_NOSUID | MS_NOEXEC | MS_NODEV, NULL);
    make_dev(root);
    mount_at("sysfs", sys, "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
    free(proc);
    free(sys);
    for (int i = 0; i < spec->n_files; i++) { /* Docker's /etc/hosts, /etc/hostname, /etc/resolv.conf */
        char *etc = join(root, "/etc/");
        char *target = join(etc, spec->file_names[i]);
        if (!exists(target))
            make_empty_file(target);
        mount_at(spec->file_sources[i], target, NULL, MS_BIND, NULL);
        free(target);
        free(etc);
    }
    for (int i = 0; i < spec->n_mounts; i++) /* -v: host paths and volumes */
        bind_in(root, &spec->mounts[i]);
}

/* pivot_root(".", ".") and detach the old root, as runc does. */
static void enter_root(const char *root, const char *workdir)
{
    check(chdir(root), "chdir", root);
    check((int)syscall(SYS_pivot_root, ".", "."), "pivot_root", root);
    check(umount2(".", MNT_DETACH), "detach the old root", root);
    if (chdir(workdir) != 0)
        refuse(128, "chdir to cwd (\"%s\") set in config.json failed: %s", workdir, strerror(errno));
}

static void loopback_up(void)
{
    struct ifreq request = {.ifr_flags = IFF_UP};
    strcpy(request.ifr_name, "lo");
    int sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    check(sock < 0 ? -1 : ioctl(sock, SIOCSIFFLAGS, &request), "bring up", "lo");
    close(sock);
}

/* A pty from the container's own devpts; the master goes to the daemon and to the shim, the slave
 * becomes stdin, stdout, stderr and the controlling terminal. */
static void take_terminal(const struct spec *spec, int keep)
{
    int master, slave;
    struct winsize size = {.ws_row = spec->console[0], .ws_col = spec->console[1]}; /* the client's */
    check(openpty(&master, &slave, NULL, NULL, &size), "openpty", "/dev/ptmx");
    send_json(keep, "master", master);
    send_json(spec->control, "{\"ready\": true}", master);
    close(master);
    setsid();
    for (int fd = 0; fd < 3; fd++)
        dup2(slave, fd);
    check(ioctl(0, TIOCSCTTY, 0), "ioctl TIOCSCTTY", "/dev/pts");
    if (slave > 2)
        close(slave);
}

/* execve along the command's own PATH (no shell fallback for scripts without #!, as runc); the
 * error kept is the first that is not "not there", else the last. */
static int exec_command(char **cmd, char **env)
{
    if (strchr(cmd[0], '/')) {
        execve(cmd[0], cmd, env);
        return errno;
    }
    const char *path = DEFAULT_PATH;
    for (char **entry = env; *entry; entry++)
        if (strncmp(*entry, "PATH=", 5) == 0)
            path = *entry + 5;
    int saved = 0, last = ENOENT;
    char *directories = join(path, ""), *rest = directories, *directory;
    while ((directory = strsep(&rest, ":"))) {
        char *candidate;
        if (asprintf(&candidate, "%s%s%s", directory, *directory ? "/" : "", cmd[0]) < 0)
            return ENOMEM;
        execve(candidate, cmd, env);
        last = errno;
        if (last != ENOENT && last != ENOTDIR && !saved)
            saved = last;
        free(candidate);
    }
    free(directories);
    return saved ? saved : last;
}

static void __attribute__((noreturn)) container_main(const struct spec *spec, int keep)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    for (int i = 0; i < spec->n_held; i++) /* the shim's, not the command's */
        close(spec->held[i]);
    check(sethostname(spec->hostname, strlen(spec->hostname)), "sethostname", spec->hostname);
    loopback_up();
    make_root(spec);
    enter_root(spec->merged, spec->workdir);
    if (spec->tty)
        take_terminal(spec, keep);
    else
        send_json(spec->control, "{\"ready\": true}", -1);
    char go[16];
    ssize_t got = recv(spec->control, go, sizeof(go), 0);
    if (got != 2 || memcmp(go, "go", 2) != 0)
        _exit(1);
    signal(SIGPIPE, SIG_DFL);
    if (spec->has_user) { /* --user, as the daemon found it in the image's /etc */
        check(setgroups(spec->n_groups, spec->groups), "setgroups", "");
        check(setgid(spec->gid), "setgid", "");
        check(setuid(spec->uid), "setuid", "");
    }
    fcntl(spec->control, F_SETFD, FD_CLOEXEC); /* closed by the exec: EOF tells the daemon the command runs */
    int error = exec_command(spec->cmd, (char **)spec->env);
    const char *reason = error == ENOENT && !strchr(spec->cmd[0], '/') ? "executable file not found in $PATH"
                         : error == ENOENT ? "no such file or directory"
                         : error == EACCES ? "permission denied" : strerror(error);
    refuse(error == EACCES ? 126 : 127, "exec: \"%s\": %s", spec->cmd[0], reason);
}

static int open_for_shim(const char *path)
{
    if (!path)
        return -1;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    check(fd < 0 ? -1 : 0, "open", path);
    return fd;
}

static const int FORWARDED[] = {SIGINT, SIGTERM, SIGHUP}; /* passed on to PID 1 */

static void pass_on(int number)
{
    kill(container_pid, number);
}

static void write_text(int fd, const char *text)
{
    if (fd >= 0) {
        ssize_t written = write(fd, text, strlen(text));
        (void)written; /* nothing to tell anyone: the daemon reads what is there */
        close(fd);
    }
}

/* The pty master PID 1 sent to the shim; -1 on EOF (PID 1 failed before it made one). */
static int receive_master(int shims)
{
    char data[16];
    union { char buffer[CMSG_SPACE(sizeof(int))]; struct cmsghdr align; } rights;
    struct iovec vector = {.iov_base = data, .iov_len = sizeof(data)};
    struct msghdr message = {.msg_iov = &vector, .msg_iovlen = 1, .msg_control = rights.buffer,
                             .msg_controllen = sizeof(rights.buffer)};
    int master = -1;
    if (recvmsg(shims, &message, MSG_CMSG_CLOEXEC) > 0) {
        struct cmsghdr *header = CMSG_FIRSTHDR(&message);
        if (header && header->cmsg_level == SOL_SOCKET && header->cmsg_type == SCM_RIGHTS)
            memcpy(&master, CMSG_DATA(header), sizeof(int));
    }
    return master;
}

/* Hold the container's output (the pty master, once PID 1 sends it), say where, wait for PID 1,
 * write its status and exit with it. */
static void __attribute__((noreturn)) shim(const struct spec *spec, int shims, int runtime_fd, int exit_fd)
{
    char state[512], *end = state;
    end += sprintf(end, "{\"shim\": %d, \"pid\": %d, \"tty\": %s, \"outputs\": {", getpid(), container_pid,
                   spec->tty ? "true" : "false");
    if (spec->tty) {
        int master = receive_master(shims);
        if (master >= 0)
            end += sprintf(end, "\"%d\": 1", master);
    } else {
        for (int i = 0; i < spec->n_held && i < 2; i++)
            end += sprintf(end, "%s\"%d\": %d", i ? ", " : "", spec->held[i], i + 1);
    }
    strcpy(end, "}}");
    close(shims);
    write_text(runtime_fd, state);
    int status;
    while (waitpid(container_pid, &status, 0) < 0 && errno == EINTR)
        ;
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    char text[16];
    snprintf(text, sizeof(text), "%d", code);
    write_text(exit_fd, text);
    _exit(code);
}

static const char *take(int argc, char **argv, int *i)
{
    if (*i + 1 >= argc) {
        fprintf(stderr, "cinit: %s needs a value\n", argv[*i]);
        exit(2);
    }
    return argv[++*i];
}

/* The command line into spec (every list sized for the worst case: argc entries). */
static void parse(int argc, char **argv, struct spec *spec)
{
    size_t n = (size_t)argc + 1;
    spec->lowers = calloc(n, sizeof(char *));
    spec->file_names = calloc(n, sizeof(char *));
    spec->file_sources = calloc(n, sizeof(char *));
    spec->env = calloc(n, sizeof(char *));
    spec->mounts = calloc(n, sizeof(struct bind));
    spec->groups = calloc(n, sizeof(gid_t));
    spec->held = calloc(n, sizeof(int));
    spec->control = -1;
    spec->network_private = 1;
    spec->workdir = "/";
    int i;
    for (i = 1; i < argc && strcmp(argv[i], "--") != 0; i++) {
        const char *option = argv[i];
        if (!strcmp(option, "--control")) spec->control = atoi(take(argc, argv, &i));
        else if (!strcmp(option, "--hostname")) spec->hostname = take(argc, argv, &i);
        else if (!strcmp(option, "--root")) {
            spec->merged = take(argc, argv, &i);
            spec->upper = take(argc, argv, &i);
            spec->work = take(argc, argv, &i);
        } else if (!strcmp(option, "--lower")) spec->lowers[spec->n_lowers++] = take(argc, argv, &i);
        else if (!strcmp(option, "--file")) {
            spec->file_names[spec->n_files] = take(argc, argv, &i);
            spec->file_sources[spec->n_files++] = take(argc, argv, &i);
        } else if (!strcmp(option, "--mount")) {
            struct bind *bind = &spec->mounts[spec->n_mounts++];
            bind->source = take(argc, argv, &i);
            bind->destination = take(argc, argv, &i);
            bind->writable = !strcmp(take(argc, argv, &i), "rw");
        } else if (!strcmp(option, "--env")) spec->env[spec->n_env++] = take(argc, argv, &i);
        else if (!strcmp(option, "--user")) {
            spec->has_user = 1;
            spec->uid = (uid_t)strtoul(take(argc, argv, &i), NULL, 10);
            spec->gid = (gid_t)strtoul(take(argc, argv, &i), NULL, 10);
        } else if (!strcmp(option, "--group")) spec->groups[spec->n_groups++] = (gid_t)strtoul(take(argc, argv, &i), NULL, 10);
        else if (!strcmp(option, "--network")) spec->network_private = strcmp(take(argc, argv, &i), "host") != 0;
        else if (!strcmp(option, "--workdir")) spec->workdir = take(argc, argv, &i);
        else if (!strcmp(option, "--tty")) spec->tty = 1;
        else if (!strcmp(option, "--console")) {
            spec->console[0] = (unsigned short)atoi(take(argc, argv, &i));
            spec->console[1] = (unsigned short)atoi(take(argc, argv, &i));
        } else if (!strcmp(option, "--held")) spec->held[spec->n_held++] = atoi(take(argc, argv, &i));
        else if (!strcmp(option, "--runtime")) spec->runtime = take(argc, argv, &i);
        else if (!strcmp(option, "--exit")) spec->exit_path = take(argc, argv, &i);
        else {
            fprintf(stderr, "cinit: unknown option %s\n", option);
            exit(2);
        }
    }
    spec->cmd = argv + i + (i < argc);
    if (spec->control < 0 || !spec->hostname || !spec->merged || !spec->cmd[0]) {
        fprintf(stderr, "usage: cinit --control FD --hostname NAME --root MERGED UPPER WORK [OPTION]... -- COMMAND\n");
        exit(2);
    }
}

int main(int argc, char **argv)
{
    struct spec spec = {0};
    parse(argc, argv, &spec);
    control_fd = spec.control;
    int network = spec.network_private ? CLONE_NEWNET : 0; /* --network host: the host's own namespace */
    check(unshare(CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | network | CLONE_NEWPID), "unshare", "namespaces");
    int pair[2];
    check(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair), "socketpair", "shim");
    /* opened now: PID 1's pivot_root moves this process's root into the container too */
    int runtime_fd = open_for_shim(spec.runtime), exit_fd = open_for_shim(spec.exit_path);
    container_pid = fork();
    check(container_pid < 0 ? -1 : 0, "fork", "PID 1");
    if (container_pid == 0) {
        close(pair[0]);
        container_main(&spec, pair[1]);
    }
    close(pair[1]);
    char message[64];
    snprintf(message, sizeof(message), "{\"pid\": %d}", container_pid);
    send_json(spec.control, message, -1);
    close(spec.control);
    control_fd = -1;
    struct sigaction forward = {.sa_handler = pass_on, .sa_flags = SA_RESTART};
    sigemptyset(&forward.sa_mask);
    for (size_t i = 0; i < sizeof(FORWARDED) / sizeof(FORWARDED[0]); i++)
        sigaction(FORWARDED[i], &forward, NULL);
    shim(&spec, pair[0], runtime_fd, exit_fd);
}
