/* Unix-socket facts Swift's Glibc cannot reach: sockaddr_un, the kernel's
 * sock_diag view of who listens on a socket file, SO_PEERGROUPS. */
#ifndef CSAFESOCKETS_H
#define CSAFESOCKETS_H
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* socket(AF_UNIX, SOCK_STREAM|SOCK_CLOEXEC) bound to path; not listening yet. */
int pvz_unix_bind(const char *path);

/* The path a Unix socket is bound to (getsockname). Returns its length, 0 for
 * an unnamed or abstract socket, -1 with errno on error. */
int pvz_unix_bound_path(int fd, char *buf, size_t len);

/* Is a listening Unix socket bound to the file (st_dev, st_ino) of a stat()?
 * Asks the kernel (NETLINK_SOCK_DIAG, UDIAG_SHOW_VFS), so nothing connects.
 * Returns 1 and the socket's sockfs inode in *sock_ino, 0 if none, -1 with
 * errno when the kernel cannot be asked. */
int pvz_unix_listener_of(uint64_t st_dev, uint64_t st_ino, uint64_t *sock_ino);

/* SO_PEERCRED of a connected Unix socket (struct ucred is _GNU_SOURCE-only). */
int pvz_peer_credentials(int fd, pid_t *pid, uid_t *uid, gid_t *gid);

/* Supplementary groups of a connected peer (SO_PEERGROUPS). Returns how many
 * (at most max are stored), -1 with errno on error. */
int pvz_peer_groups(int fd, gid_t *groups, int max);

/* rename(2) that fails with EEXIST instead of replacing (renameat2
 * RENAME_NOREPLACE): a socket another process put there meanwhile stays. */
int pvz_rename_noreplace(const char *from, const char *to);

/* 1 if something accepts a connection on path (fallback when sock_diag is
 * unavailable; the listener sees a connection that closes at once). */
int pvz_unix_probe(const char *path);

#endif
