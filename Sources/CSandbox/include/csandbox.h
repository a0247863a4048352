/* Process-hardening calls Swift cannot make directly: prctl and capset are
 * variadic or unwrapped by glibc. */
#ifndef CSANDBOX_H
#define CSANDBOX_H
#include <sys/types.h>

/* PR_SET_NO_NEW_PRIVS: execve can never gain privileges again. */
int pvz_set_no_new_privs(void);
int pvz_get_no_new_privs(void);

/* Empties the bounding and ambient sets (needs CAP_SETPCAP): nothing can
 * regain a capability, while the current ones still allow a user switch. */
int pvz_drop_bounding_capabilities(void);

/* Empties the permitted, effective and inheritable sets of the calling
 * thread. Returns 0, or -1 with errno. */
int pvz_clear_capabilities(void);

/* Effective capability mask of the calling thread (bits 0..63). */
unsigned long long pvz_effective_capabilities(void);

/* Threads of this process (from /proc/self/task); -1 if unknown. */
int pvz_thread_count(void);

/* setresgid/setresuid with supplementary groups, in the order that works:
 * groups, gid, uid. Returns 0, or -1 with errno and *step naming the call. */
int pvz_switch_user(uid_t uid, gid_t gid, const gid_t *groups, int ngroups, const char **step);

#endif
