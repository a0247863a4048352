/* The few things Swift on Linux cannot reach: SCM_RIGHTS control messages,
 * memfd, eventfd/epoll flags, SO_PEERCRED, and C11 fences/atomics on memory
 * shared with a guest. Keep this tiny: everything else belongs in Swift. */
#ifndef CPVZSHIM_H
#define CPVZSHIM_H
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/eventfd.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <linux/memfd.h>

#define PVZ_MAX_FDS 8

/* sendmsg with up to PVZ_MAX_FDS descriptors in one SCM_RIGHTS message. */
ssize_t pvz_send_with_fds(int sock, const void *buf, size_t len, const int *fds, int nfds);

/* recvmsg that also collects SCM_RIGHTS descriptors (made close-on-exec).
 * *nfds gets how many arrived; *ctrunc is set when the kernel truncated
 * control data (too many fds: they are closed by the kernel, so this is an error). */
ssize_t pvz_recv_with_fds(int sock, void *buf, size_t len, int *fds, int maxfds, int *nfds, int *ctrunc);

int pvz_memfd_create(const char *name, unsigned int flags);

/* Peer credentials of a connected Unix socket. */
int pvz_peer_cred(int sock, pid_t *pid, uid_t *uid, gid_t *gid);

/* Make this process a child subreaper (reap orphans of children we start). */
int pvz_set_child_subreaper(void);

/* Bind/connect a Unix stream socket to a path (sockaddr_un is awkward in Swift). */
int pvz_unix_listen(const char *path, int backlog);
int pvz_unix_connect(const char *path);

/* accept4(SOCK_CLOEXEC) and pthread_setname_np: GNU extensions Swift's Glibc hides. */
int pvz_accept_cloexec(int listen_fd);
void pvz_set_thread_name(const char *name);

/* SIGBUS guard for guest-memory mappings (guard.c): a fault inside a
 * registered mapping replaces it with anonymous memory and is counted on its
 * slot instead of killing the daemon. Any other SIGBUS crashes as before. */
#define PVZ_GUARD_SLOTS 4096
int pvz_guard_install(void);
/* Slot index, or -1 with errno ENOSPC when every slot is taken. */
int pvz_guard_register(void *base, size_t length);
void pvz_guard_unregister(int slot);
/* SIGBUS faults seen inside the slot's mapping since it was registered. */
unsigned pvz_guard_faults(int slot);

static inline void pvz_fence_acquire(void) { __atomic_thread_fence(__ATOMIC_ACQUIRE); }
static inline void pvz_fence_release(void) { __atomic_thread_fence(__ATOMIC_RELEASE); }
static inline void pvz_fence_seq_cst(void) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }

static inline uint8_t pvz_load_acquire_u8(const void *p) { return __atomic_load_n((const uint8_t *)p, __ATOMIC_ACQUIRE); }
static inline void pvz_store_release_u8(void *p, uint8_t v) { __atomic_store_n((uint8_t *)p, v, __ATOMIC_RELEASE); }
static inline uint16_t pvz_load_acquire_u16(const void *p) { return __atomic_load_n((const uint16_t *)p, __ATOMIC_ACQUIRE); }
static inline void pvz_store_release_u16(void *p, uint16_t v) { __atomic_store_n((uint16_t *)p, v, __ATOMIC_RELEASE); }
static inline uint32_t pvz_load_acquire_u32(const void *p) { return __atomic_load_n((const uint32_t *)p, __ATOMIC_ACQUIRE); }
static inline void pvz_store_release_u32(void *p, uint32_t v) { __atomic_store_n((uint32_t *)p, v, __ATOMIC_RELEASE); }
static inline uint64_t pvz_load_acquire_u64(const void *p) { return __atomic_load_n((const uint64_t *)p, __ATOMIC_ACQUIRE); }
static inline void pvz_store_release_u64(void *p, uint64_t v) { __atomic_store_n((uint64_t *)p, v, __ATOMIC_RELEASE); }
/* Sets bits in a byte another process reads and clears (a dirty log): release, so the
 * write being logged is visible before its bit. */
static inline void pvz_or_release_u8(void *p, uint8_t v) { __atomic_fetch_or((uint8_t *)p, v, __ATOMIC_RELEASE); }

#endif
