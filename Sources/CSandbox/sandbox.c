#define _GNU_SOURCE
#include "csandbox.h"
#include <dirent.h>
#include <errno.h>
#include <grp.h>
#include <linux/capability.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

int pvz_set_no_new_privs(void) { return prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); }
int pvz_get_no_new_privs(void) { return prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0); }

int pvz_drop_bounding_capabilities(void)
{
    for (int cap = 0; cap <= 63; cap++) {
        if (prctl(PR_CAPBSET_READ, cap, 0, 0, 0) <= 0) continue;
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0) return -1;
    }
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL) return -1;
    return 0;
}

int pvz_clear_capabilities(void)
{
    struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
    struct __user_cap_data_struct d[2];
    memset(d, 0, sizeof(d));
    return (int)syscall(SYS_capset, &h, d);
}

unsigned long long pvz_effective_capabilities(void)
{
    struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
    struct __user_cap_data_struct d[2];
    memset(d, 0, sizeof(d));
    if (syscall(SYS_capget, &h, d) != 0) return ~0ULL;
    return (unsigned long long)d[0].effective | ((unsigned long long)d[1].effective << 32);
}

int pvz_thread_count(void)
{
    DIR *d = opendir("/proc/self/task");
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) if (e->d_name[0] != '.') n++;
    closedir(d);
    return n;
}

int pvz_switch_user(uid_t uid, gid_t gid, const gid_t *groups, int ngroups, const char **step)
{
    *step = "setgroups";
    if (setgroups((size_t)ngroups, groups) != 0) return -1;
    *step = "setresgid";
    if (setresgid(gid, gid, gid) != 0) return -1;
    *step = "setresuid";
    if (setresuid(uid, uid, uid) != 0) return -1;
    *step = "check";
    uid_t r, e, s;
    if (getresuid(&r, &e, &s) != 0 || r != uid || e != uid || s != uid) { errno = EPERM; return -1; }
    /* Root must be gone for good. */
    if (uid != 0 && setresuid(0, 0, 0) == 0) { errno = EPERM; return -1; }
    return 0;
}
