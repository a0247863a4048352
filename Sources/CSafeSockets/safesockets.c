#define _GNU_SOURCE
#include "csafesockets.h"
#include <errno.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <fcntl.h>
#include <stdio.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>

#ifndef SO_PEERGROUPS
#define SO_PEERGROUPS 59
#endif

int pvz_unix_bind(const char *path)
{
    struct sockaddr_un a;
    memset(&a, 0, sizeof(a));
    a.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof(a.sun_path)) { errno = ENAMETOOLONG; return -1; }
    strcpy(a.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0) { int e = errno; close(fd); errno = e; return -1; }
    return fd;
}

int pvz_unix_bound_path(int fd, char *buf, size_t len)
{
    struct sockaddr_un a;
    socklen_t alen = sizeof(a);
    memset(&a, 0, sizeof(a));
    if (getsockname(fd, (struct sockaddr *)&a, &alen) < 0) return -1;
    if (a.sun_family != AF_UNIX) { errno = EAFNOSUPPORT; return -1; }
    size_t n = alen > offsetof(struct sockaddr_un, sun_path) ? alen - offsetof(struct sockaddr_un, sun_path) : 0;
    if (n == 0 || a.sun_path[0] == 0) return 0;  /* unnamed or abstract */
    size_t l = strnlen(a.sun_path, n);
    if (l + 1 > len) { errno = ENAMETOOLONG; return -1; }
    memcpy(buf, a.sun_path, l);
    buf[l] = 0;
    return (int)l;
}

/* The kernel reports a socket file's device as its internal dev_t
 * (major << 20 | minor); stat() encodes it differently. */
static uint64_t kernel_dev(uint64_t st_dev)
{
    return ((uint64_t)major(st_dev) << 20) | (uint64_t)minor(st_dev);
}

int pvz_unix_listener_of(uint64_t st_dev, uint64_t st_ino, uint64_t *sock_ino)
{
    int nl = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
    if (nl < 0) return -1;
    struct {
        struct nlmsghdr nlh;
        struct unix_diag_req req;
    } q;
    memset(&q, 0, sizeof(q));
    q.nlh.nlmsg_len = sizeof(q);
    q.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
    q.nlh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
    q.req.sdiag_family = AF_UNIX;
    q.req.udiag_states = 1 << 10; /* TCP_LISTEN */
    q.req.udiag_show = UDIAG_SHOW_VFS;
    struct sockaddr_nl kernel = { .nl_family = AF_NETLINK };
    if (sendto(nl, &q, sizeof(q), 0, (struct sockaddr *)&kernel, sizeof(kernel)) < 0) {
        int e = errno; close(nl); errno = e; return -1;
    }
    uint64_t want_dev = kernel_dev(st_dev);
    int found = 0;
    long buf[8192 / sizeof(long)];
    for (;;) {
        ssize_t n = recv(nl, buf, sizeof(buf), 0);
        if (n < 0) {
            if (errno == EINTR) continue;
            int e = errno; close(nl); errno = e; return -1;
        }
        if (n == 0) break;
        for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, (size_t)n); h = NLMSG_NEXT(h, n)) {
            if (h->nlmsg_type == NLMSG_DONE) { close(nl); return found; }
            if (h->nlmsg_type == NLMSG_ERROR) {
                struct nlmsgerr *err = NLMSG_DATA(h);
                close(nl);
                errno = err->error ? -err->error : EIO;
                return -1;
            }
            struct unix_diag_msg *m = NLMSG_DATA(h);
            int rtalen = (int)(h->nlmsg_len - NLMSG_LENGTH(sizeof(*m)));
            for (struct rtattr *a = (struct rtattr *)(m + 1); RTA_OK(a, rtalen); a = RTA_NEXT(a, rtalen)) {
                if (a->rta_type != UNIX_DIAG_VFS) continue;
                struct unix_diag_vfs *v = RTA_DATA(a);
                if (v->udiag_vfs_ino == st_ino && v->udiag_vfs_dev == want_dev) {
                    *sock_ino = m->udiag_ino;
                    found = 1;
                }
            }
        }
    }
    close(nl);
    return found;
}

int pvz_peer_groups(int fd, gid_t *groups, int max)
{
    socklen_t len = (socklen_t)(sizeof(gid_t) * (size_t)max);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) < 0) {
        if (errno != ERANGE) return -1;
        /* More groups than room: the kernel put the needed size in len. */
        return (int)(len / sizeof(gid_t));
    }
    return (int)(len / sizeof(gid_t));
}

int pvz_rename_noreplace(const char *from, const char *to)
{
    return renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE);
}

int pvz_unix_probe(const char *path)
{
    struct sockaddr_un a;
    memset(&a, 0, sizeof(a));
    a.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof(a.sun_path)) return 0;
    strcpy(a.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return 0;
    int r = connect(fd, (struct sockaddr *)&a, sizeof(a));
    close(fd);
    return r == 0;
}

int pvz_peer_credentials(int fd, pid_t *pid, uid_t *uid, gid_t *gid)
{
    struct ucred c;
    socklen_t len = sizeof(c);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &c, &len) < 0) return -1;
    *pid = c.pid; *uid = c.uid; *gid = c.gid;
    return 0;
}
