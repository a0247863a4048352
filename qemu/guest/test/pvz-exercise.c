// SPDX-License-Identifier: MIT
/*
 * pvz-exercise: the virtio_pvz driver as a kernel boundary (issue 16, issue
 * 9's guest side). Run inside the test guest by /init when the kernel command
 * line says pvz.prog=exercise; scripts/vm-test scenario (e) drives it.
 *
 * Every case prints "PVZTEST <name> PASS|FAIL <detail>"; the host also scans
 * the serial log for oopses, WARNINGs, "BUG" and slab poison reports, which
 * is how the use-after-free and PAT cases fail on a broken driver.
 *
 * Phases (pvz.mode=, comma-separated, in order):
 *   basic     privileges, retired ioctls, RAW refusals, request ids, the heap
 *             lifecycle, mmap rules, the event budget, malformed ioctls,
 *             threads, close during calls, killed callers, unbind/rebind
 *   debug     (reloads the module with debug_unsafe=1) stray device mappings
 *             across unbind, a heap freed while the device maps it (after
 *             UNMAP, and after a MAP the device refused), a ring broken on
 *             purpose and the driver's recovery
 *   break     the broken-ring case alone (the module already has debug_unsafe=1)
 *   down      (host assisted over ttyS1) the daemon killed: PCI remove with
 *             files open and the heap mapped, then probe after the restart
 *   unreserved  (a boot whose carve-out is not reserved) the register bank
 *             must not be mappable
 * The retired ioctls (MAP/UNMAP_DEV_PHYS_HEAP with a user address,
 * ALLOC/FREE_FW_HEAP) are spelled out here on purpose: the same binary run
 * against the old driver shows what that driver let through.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>
#include "virtio_pvz_uapi.h"
#include "pvz_regs.h"

/* The interface before issue 16, kept only to prove it is gone. */
struct legacy_map_heap {
	struct pvz_call_hdr hdr;
	__u64 size;
	__u64 paddr;
};
struct legacy_fw_heap {
	__u64 size;
	__u64 ipa;
};
#define LEGACY_IOC_MAP_DEV_PHYS_HEAP   _IOWR(PVZ_IOC_MAGIC, 0x05, struct legacy_map_heap)
#define LEGACY_IOC_UNMAP_DEV_PHYS_HEAP _IOWR(PVZ_IOC_MAGIC, 0x06, struct pvz_call_hdr)
#define LEGACY_IOC_ALLOC_FW_HEAP       _IOWR(PVZ_IOC_MAGIC, 0x22, struct legacy_fw_heap)
#define LEGACY_IOC_FREE_FW_HEAP        _IO(PVZ_IOC_MAGIC, 0x23)

#define MODULE_KO "/lib/modules/virtio_pvz.ko"
#define DRV_DIR "/sys/bus/virtio/drivers/virtio_pvz"

static unsigned int passed, failed;
static struct {
	unsigned int osid;
	__u64 co_ipa, co_size;
	char mode[128];
	char modargs[256];   /* virtio_pvz.* from the command line, for reloads */
} arg = { .mode = "basic" };
static int ctl_fd = -1;  /* ttyS1: lines from the host script */

static bool check(const char *name, bool ok, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static bool check(const char *name, bool ok, const char *fmt, ...)
{
	va_list ap;

	printf("PVZTEST %s %s ", name, ok ? "PASS" : "FAIL");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
	if (ok)
		passed++;
	else
		failed++;
	return ok;
}

static __u64 now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (__u64)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static void msleep(unsigned int ms)
{
	usleep(ms * 1000u);
}

static const char *err_name(int e)
{
	return e ? strerror(e) : "ok";
}

/* ---- command line, module, sysfs ---- */

static void parse_cmdline(void)
{
	char buf[4096], *tok, *save;
	FILE *f = fopen("/proc/cmdline", "r");
	size_t n;

	if (!f)
		return;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	for (tok = strtok_r(buf, " \n", &save); tok; tok = strtok_r(NULL, " \n", &save)) {
		if (!strncmp(tok, "pvz.osid=", 9)) {
			arg.osid = strtoul(tok + 9, NULL, 0);
		} else if (!strncmp(tok, "pvz.carveout=", 13)) {
			char *end;

			arg.co_ipa = strtoull(tok + 13, &end, 0);
			if (*end == ':')
				arg.co_size = strtoull(end + 1, NULL, 0);
		} else if (!strncmp(tok, "pvz.mode=", 9)) {
			snprintf(arg.mode, sizeof(arg.mode), "%s", tok + 9);
		} else if (!strncmp(tok, "virtio_pvz.", 11)) {
			size_t l = strlen(arg.modargs);

			snprintf(arg.modargs + l, sizeof(arg.modargs) - l, " %s", tok + 11);
		}
	}
}

static int write_file(const char *path, const char *s)
{
	int fd = open(path, O_WRONLY), e = 0;

	if (fd < 0)
		return errno;
	if (write(fd, s, strlen(s)) < 0)
		e = errno;
	close(fd);
	return e;
}

static int read_file(const char *path, char *buf, size_t len)
{
	int fd = open(path, O_RDONLY);
	ssize_t n;

	if (fd < 0)
		return -1;
	n = read(fd, buf, len - 1);
	close(fd);
	if (n < 0)
		return -1;
	buf[n] = 0;
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
		buf[--n] = 0;
	return 0;
}

/* The virtio device of the PVZ device ("virtio1"), bound or not: ID
 * VIRTIO_ID_PVZ or the one the module's virtio_id parameter adds. */
static bool find_virtio_dev(char *name, size_t len)
{
	DIR *d = opendir("/sys/bus/virtio/devices");
	struct dirent *e;
	bool found = false;
	unsigned long other_id = 0;
	char v[32];

	if (!read_file("/sys/module/virtio_pvz/parameters/virtio_id", v, sizeof(v)))
		other_id = strtoul(v, NULL, 0);
	if (!other_id)
		other_id = VIRTIO_ID_PVZ;

	if (!d)
		return false;
	while (!found && (e = readdir(d))) {
		char path[600];

		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/sys/bus/virtio/devices/%s/device", e->d_name);
		if (!read_file(path, v, sizeof(v)) &&
		    (strtoul(v, NULL, 0) == VIRTIO_ID_PVZ || strtoul(v, NULL, 0) == other_id)) {
			size_t l = strnlen(e->d_name, len - 1);

			memcpy(name, e->d_name, l);
			name[l] = 0;
			found = true;
		}
	}
	closedir(d);
	return found;
}

/* The PCI device under it: /sys/bus/pci/devices/0000:00:03.0 */
static bool find_pci_dev(const char *vname, char *pci, size_t len)
{
	char path[512], real[512], *slash;

	snprintf(path, sizeof(path), "/sys/bus/virtio/devices/%s", vname);
	if (!realpath(path, real))
		return false;
	slash = strrchr(real, '/');
	if (!slash)
		return false;
	*slash = 0;
	slash = strrchr(real, '/');
	if (!slash)
		return false;
	snprintf(pci, len, "/sys/bus/pci/devices/%s", slash + 1);
	return access(pci, F_OK) == 0;
}

/* The node of the device: /dev/pvz, or /dev/pvzN while an older device of
 * the same index is still held open somewhere. */
static char node[32] = "/dev/pvz";

static bool find_node(void)
{
	int i;

	if (access("/dev/pvz", F_OK) == 0) {
		snprintf(node, sizeof(node), "/dev/pvz");
		return true;
	}
	for (i = 1; i < 8; i++) {
		snprintf(node, sizeof(node), "/dev/pvz%d", i);
		if (access(node, F_OK) == 0)
			return true;
	}
	snprintf(node, sizeof(node), "/dev/pvz");
	return false;
}

static bool wait_node(bool present, unsigned int ms)
{
	__u64 end = now_ns() + ms * 1000000ull;

	do {
		if (find_node() == present)
			return true;
		msleep(50);
	} while (now_ns() < end);
	return false;
}

static int reload_module(const char *extra)
{
	char cmd[512];
	int rc;

	if (system("rmmod virtio_pvz") != 0)
		return -1;
	snprintf(cmd, sizeof(cmd), "insmod " MODULE_KO "%s %s", arg.modargs, extra);
	printf("PVZINFO %s\n", cmd);
	rc = system(cmd);
	if (rc != 0)
		return -1;
	return wait_node(true, 10000) ? 0 : -1;
}

/* A line from the host (ttyS1); "PVZGOT" lets the host know it arrived. */
static bool host_wait(const char *ready, const char *want, unsigned int s)
{
	__u64 end = now_ns() + s * 1000000000ull;
	char line[128];
	size_t n = 0;

	printf("PVZREADY %s\n", ready);
	fflush(stdout);
	if (ctl_fd < 0)
		return false;
	while (now_ns() < end) {
		struct pollfd p = { .fd = ctl_fd, .events = POLLIN };
		char c;

		if (poll(&p, 1, 500) <= 0)
			continue;
		if (read(ctl_fd, &c, 1) != 1)
			continue;
		if (c == '\r' || c == '\n') {
			line[n] = 0;
			if (n) {
				printf("PVZGOT %s\n", line);
				fflush(stdout);
				if (!strcmp(line, want))
					return true;
			}
			n = 0;
		} else if (n < sizeof(line) - 1) {
			line[n++] = c;
		}
	}
	return false;
}

static void open_ctl(void)
{
	struct termios t;

	ctl_fd = open("/dev/ttyS1", O_RDWR | O_NOCTTY | O_NONBLOCK);
	if (ctl_fd < 0)
		return;
	if (!tcgetattr(ctl_fd, &t)) {
		cfmakeraw(&t);
		tcsetattr(ctl_fd, TCSANOW, &t);
	}
}

/* ---- calls ---- */

#define XFAIL(e) (100u + (unsigned int)(e))

static int open_pvz(void)
{
	find_node();
	return open(node, O_RDWR | O_CLOEXEC);
}

static unsigned int read_reg(int fd, uint32_t off, uint32_t *val)
{
	struct pvz_reg r = { .offset = off };

	if (ioctl(fd, PVZ_IOC_READ_REG, &r) < 0)
		return XFAIL(errno);
	if (val)
		*val = r.value;
	return r.hdr.status;
}

/* The driver before issue 16 had a 24-byte shorter struct pvz_config. */
#define LEGACY_IOC_GET_CONFIG _IOC(_IOC_READ, PVZ_IOC_MAGIC, 0x00, sizeof(struct pvz_config) - 24)

static int get_config(int fd, struct pvz_config *c)
{
	memset(c, 0, sizeof(*c));
	if (ioctl(fd, PVZ_IOC_GET_CONFIG, c) == 0)
		return 0;
	if (errno == ENOTTY && ioctl(fd, LEGACY_IOC_GET_CONFIG, c) == 0)
		return 0;
	return errno;
}

static unsigned int map_fw_heap(int fd, struct pvz_fw_heap *h)
{
	memset(h, 0, sizeof(*h));
	if (ioctl(fd, PVZ_IOC_MAP_FW_HEAP, h) < 0)
		return XFAIL(errno);
	return h->hdr.status;
}

static unsigned int unmap_fw_heap(int fd)
{
	struct pvz_call_hdr h = { 0 };

	if (ioctl(fd, PVZ_IOC_UNMAP_FW_HEAP, &h) < 0)
		return XFAIL(errno);
	return h.status;
}

/* RAW call; returns the PVZ status in the response, XFAIL(errno) on error. */
static unsigned int raw_call(int fd, uint32_t fn, const void *in, uint32_t in_len, uint32_t out_len)
{
	struct pvz_raw r;
	uint32_t st;

	memset(&r, 0, sizeof(r));
	r.req_len = 16 + in_len;
	r.resp_len = 16 + out_len;
	memcpy(r.req, &fn, 4);
	if (in_len)
		memcpy(r.req + 16, in, in_len);
	if (ioctl(fd, PVZ_IOC_RAW, &r) < 0)
		return XFAIL(errno);
	if (r.used_len < 16)
		return XFAIL(EPROTO);
	memcpy(&st, r.resp, 4);
	return st;
}

static unsigned int raw_map(int fd, __u64 ipa, __u64 size)
{
	__u64 in[2] = { size, ipa };

	return raw_call(fd, PVZ_FN_MAP_DEV_PHYS_HEAP, in, 16, 0);
}

static const char *st_str(unsigned int st)
{
	static char buf[64];
	static const char *const n[] = { "OK", "NOT_IMPLEMENTED", "INVALID_PARAMS",
		"OUT_OF_MEMORY", "INVALID_OSID", "ALREADY_EXISTS", "NOT_FOUND",
		"ADDRESS_OUT_OF_RANGE", "MALFORMED_REQUEST", "VM_OFFLINE", "INVALID_PVZ_CONFIG" };

	if (st >= 100) {
		snprintf(buf, sizeof(buf), "errno:%s", strerror((int)st - 100));
		return buf;
	}
	return st < sizeof(n) / sizeof(n[0]) ? n[st] : "?";
}

/* The heap lifecycle in both interfaces: the new MAP_FW_HEAP, or the old
 * driver's ALLOC_FW_HEAP (then nothing is mapped yet). */
static bool get_heap(int fd, __u64 *ipa, __u64 *size, bool *mapped)
{
	struct pvz_fw_heap h;
	struct legacy_fw_heap l = { 0 };
	unsigned int st = map_fw_heap(fd, &h);

	if (st == PVZ_OK) {
		*ipa = h.ipa;
		*size = h.size;
		*mapped = true;
		return true;
	}
	if (st == XFAIL(ENOTTY) && ioctl(fd, LEGACY_IOC_ALLOC_FW_HEAP, &l) == 0) {
		*ipa = l.ipa;
		*size = l.size;
		*mapped = false;
		return true;
	}
	printf("PVZINFO get_heap: MAP_FW_HEAP %s\n", st_str(st));
	return false;
}

static bool config_maps(int fd, __u64 ipa, __u64 size)
{
	struct pvz_config c;

	if (get_config(fd, &c))
		return false;
	return (c.status & PVZ_STATUS_FW_HEAP_MAPPED) && c.fw_heap_ipa < ipa + size &&
	       ipa < c.fw_heap_ipa + c.fw_heap_size;
}

/* ---- basic: privileges ---- */

struct op_result { const char *name; int err; };

/* In a child without any capability (uid 65534): which calls still work. */
static void case_privileges(int fd)
{
	struct stat st = { 0 };
	int pipefd[2];
	pid_t pid;

	int rc = stat(node, &st);

	check("priv.node_mode", rc == 0 && (st.st_mode & 0777) == 0600 && st.st_uid == 0,
	      "%s mode=%o uid=%u (root-only by default)", node, st.st_mode & 0777, st.st_uid);
	if (pipe(pipefd))
		return;
	pid = fork();
	if (pid == 0) {
		struct op_result r[20];
		struct pvz_dev_config dc = { 0 };
		struct pvz_phys_heaps ph = { 0 };
		struct pvz_call_hdr h = { 0 };
		struct pvz_fw_heap fh;
		struct pvz_reg reg = { .offset = PVZ_REG_SCRATCH, .value = 1 };
		struct pvz_kick k = { 0 };
		struct pvz_raw raw;
		struct pvz_config c;
		struct pvz_heap_origin o = { .heap = PVZ_HEAP_FW_LOCAL };
		struct legacy_map_heap lm = { .size = 4096, .paddr = 0x100000 };
		struct legacy_fw_heap lf = { .size = 4096 };
		int n = 0, fd2;
		void *m;

		close(pipefd[0]);
		if (setresgid(65534, 65534, 65534) || setresuid(65534, 65534, 65534))
			_exit(2);
		fd2 = open(node, O_RDWR);
		r[n].name = "open_as_nobody"; r[n++].err = fd2 < 0 ? errno : 0;
		if (fd2 >= 0)
			close(fd2);
#define TRY(nm, call) do { r[n].name = nm; r[n++].err = (call) < 0 ? errno : 0; } while (0)
		TRY("create_dev_config", ioctl(fd, PVZ_IOC_CREATE_DEV_CONFIG, &dc));
		TRY("destroy_dev_config", ioctl(fd, PVZ_IOC_DESTROY_DEV_CONFIG, &h));
		TRY("create_dev_phys_heaps", ioctl(fd, PVZ_IOC_CREATE_DEV_PHYS_HEAPS, &ph));
		TRY("destroy_dev_phys_heaps", ioctl(fd, PVZ_IOC_DESTROY_DEV_PHYS_HEAPS, &h));
		TRY("map_fw_heap", ioctl(fd, PVZ_IOC_MAP_FW_HEAP, &fh));
		TRY("unmap_fw_heap", ioctl(fd, PVZ_IOC_UNMAP_FW_HEAP, &h));
		TRY("write_reg", ioctl(fd, PVZ_IOC_WRITE_REG, &reg));
		TRY("kick", ioctl(fd, PVZ_IOC_KICK, &k));
		memset(&raw, 0, sizeof(raw));
		raw.req_len = 16;
		raw.resp_len = 16;
		raw.req[0] = PVZ_FN_READ_REG;
		TRY("raw", ioctl(fd, PVZ_IOC_RAW, &raw));
		TRY("legacy_map_dev_phys_heap", ioctl(fd, LEGACY_IOC_MAP_DEV_PHYS_HEAP, &lm));
		TRY("legacy_alloc_fw_heap", ioctl(fd, LEGACY_IOC_ALLOC_FW_HEAP, &lf));
		if (!r[n - 1].err)
			ioctl(fd, LEGACY_IOC_FREE_FW_HEAP);
		m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, PVZ_MMAP_FW_HEAP);
		r[n].name = "mmap_fw_heap"; r[n++].err = m == MAP_FAILED ? errno : 0;
		/* reading needs no privilege */
		reg.offset = PVZ_REG_CORE_ID;
		TRY("read.get_config", ioctl(fd, PVZ_IOC_GET_CONFIG, &c));
		TRY("read.read_reg", ioctl(fd, PVZ_IOC_READ_REG, &reg));
		TRY("read.get_heap_origin", ioctl(fd, PVZ_IOC_GET_HEAP_ORIGIN, &o));
		m = mmap(NULL, VIRTIO_PVZ_REGS_SIZE, PROT_READ, MAP_SHARED, fd, PVZ_MMAP_REGS);
		r[n].name = "read.mmap_regs"; r[n++].err = m == MAP_FAILED ? errno : 0;
#undef TRY
		if (write(pipefd[1], r, n * sizeof(r[0])) < 0)
			_exit(3);
		_exit(0);
	}
	close(pipefd[1]);
	{
		struct op_result r[20];
		ssize_t got = read(pipefd[0], r, sizeof(r));
		int i, n = got > 0 ? (int)(got / (ssize_t)sizeof(r[0])) : 0;
		char name[96];

		waitpid(pid, NULL, 0);
		check("priv.child", n >= 10, "results=%d", n);
		for (i = 0; i < n; i++) {
			bool reading = !strncmp(r[i].name, "read.", 5);

			snprintf(name, sizeof(name), "priv.%s", r[i].name);
			if (reading)
				check(name, r[i].err == 0, "errno=%s (no privilege needed)", err_name(r[i].err));
			else if (!strcmp(r[i].name, "open_as_nobody"))
				check(name, r[i].err == EACCES, "errno=%s (want EACCES: node is 0600)", err_name(r[i].err));
			else
				check(name, r[i].err == EPERM || r[i].err == ENOTTY,
				      "errno=%s (want EPERM without CAP_SYS_ADMIN)", err_name(r[i].err));
		}
	}
	close(pipefd[0]);
}

/* ---- basic: what user space can no longer name ---- */

static void case_retired_and_raw(int fd)
{
	struct legacy_map_heap lm = { .size = 32u << 20, .paddr = 0x2000000 };
	struct legacy_fw_heap lf = { .size = 4096 };
	struct pvz_call_hdr h = { 0 };
	int rc, e;
	uint32_t fn;

	/* finding 2: user space chose where the device writes */
	rc = ioctl(fd, LEGACY_IOC_MAP_DEV_PHYS_HEAP, &lm);
	e = rc < 0 ? errno : 0;
	check("user_pa.map_ioctl_gone", rc < 0 && e == ENOTTY, "errno=%s status=%s (want ENOTTY)", err_name(e),
	      rc == 0 ? st_str(lm.hdr.status) : "-");
	if (rc == 0 && lm.hdr.status == PVZ_OK)
		ioctl(fd, LEGACY_IOC_UNMAP_DEV_PHYS_HEAP, &h);
	/* finding 5: a one-page heap of the caller's choosing */
	rc = ioctl(fd, LEGACY_IOC_ALLOC_FW_HEAP, &lf);
	e = rc < 0 ? errno : 0;
	check("user_pa.alloc_size_gone", rc < 0 && e == ENOTTY, "errno=%s (want ENOTTY)", err_name(e));
	if (rc == 0)
		ioctl(fd, LEGACY_IOC_FREE_FW_HEAP);
	for (fn = PVZ_FN_CREATE_DEV_PHYS_HEAPS; fn <= PVZ_FN_UNMAP_DEV_PHYS_HEAP; fn++) {
		__u64 in[2] = { 32u << 20, 0x2000000 };
		char name[64];
		unsigned int st = raw_call(fd, fn, in, fn == PVZ_FN_MAP_DEV_PHYS_HEAP ? 16 : 0,
					   fn == PVZ_FN_CREATE_DEV_PHYS_HEAPS ? 40 : 0);

		snprintf(name, sizeof(name), "raw.heap_function_%u_refused", fn);
		check(name, st == XFAIL(EPERM), "got=%s (want EPERM without debug_unsafe)", st_str(st));
		if (st == PVZ_OK && fn == PVZ_FN_MAP_DEV_PHYS_HEAP)
			raw_call(fd, PVZ_FN_UNMAP_DEV_PHYS_HEAP, NULL, 0, 0);
		if (st == PVZ_OK && fn == PVZ_FN_CREATE_DEV_PHYS_HEAPS)
			raw_call(fd, PVZ_FN_DESTROY_DEV_PHYS_HEAPS, NULL, 0, 0);
	}
	rc = ioctl(fd, PVZ_IOC_DEBUG_BREAK_RING);
	e = rc < 0 ? errno : 0;
	check("debug.break_ring_refused", rc < 0 && (e == EPERM || e == ENOTTY), "errno=%s (want EPERM)", err_name(e));
}

/* ---- basic: request ids ---- */

#define ID_CALLS 200
struct id_thread { int fd; uint32_t ids[ID_CALLS]; int n; };

static void *id_worker(void *a)
{
	struct id_thread *t = a;
	int i;

	for (i = 0; i < ID_CALLS; i++) {
		struct pvz_reg r = { .offset = PVZ_REG_CORE_ID };

		if (ioctl(t->fd, PVZ_IOC_READ_REG, &r) == 0)
			t->ids[t->n++] = r.hdr.request_id;
	}
	return NULL;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

static void case_request_ids(int fd)
{
	static struct id_thread t[2];
	static uint32_t all[2 * ID_CALLS];
	pthread_t th[2];
	struct pvz_config c0, c1;
	struct pvz_raw r;
	int i, j, n = 0, dup = 0, back = 0;
	uint32_t echoed;

	get_config(fd, &c0);
	for (i = 0; i < 2; i++) {
		t[i].fd = fd;
		t[i].n = 0;
		pthread_create(&th[i], NULL, id_worker, &t[i]);
	}
	for (i = 0; i < 2; i++) {
		pthread_join(th[i], NULL);
		for (j = 0; j < t[i].n; j++) {
			if (j && t[i].ids[j] <= t[i].ids[j - 1])
				back++;
			all[n++] = t[i].ids[j];
		}
	}
	qsort(all, n, sizeof(all[0]), cmp_u32);
	for (i = 1; i < n; i++)
		if (all[i] == all[i - 1])
			dup++;
	get_config(fd, &c1);
	check("ids.unique_increasing", n == 2 * ID_CALLS && !dup && !back && all[0] > c0.last_request_id &&
	      c1.last_request_id == all[n - 1],
	      "calls=%d duplicates=%d not_increasing=%d first=%u last=%u before=%llu after=%llu", n, dup, back,
	      n ? all[0] : 0, n ? all[n - 1] : 0, c0.last_request_id, c1.last_request_id);
	/* RAW may not choose the id the device sees */
	memset(&r, 0, sizeof(r));
	r.req_len = 20;
	r.resp_len = 20;
	r.req[0] = PVZ_FN_READ_REG;
	memset(r.req + 12, 0xEE, 4);
	i = ioctl(fd, PVZ_IOC_RAW, &r);
	memcpy(&echoed, r.resp + 8, 4);
	get_config(fd, &c0);
	check("ids.raw_uses_driver_id", i == 0 && echoed == r.request_id && echoed != 0xEEEEEEEEu &&
	      echoed > c1.last_request_id && c0.last_request_id == echoed,
	      "rc=%d echoed=%#x request_id=%#x last=%llu", i, echoed, r.request_id, c0.last_request_id);
}

/* ---- basic: the heap lifecycle and mmap rules ---- */

static struct pvz_fw_heap heap;

static void case_heap(int fd)
{
	struct pvz_heap_addr_size as = { .heap = PVZ_HEAP_FW_LOCAL };
	struct pvz_fw_heap again;
	struct pvz_config c;
	unsigned int st;
	size_t len = 2u << 20;
	uint8_t *m;
	int rc, e;

	ioctl(fd, PVZ_IOC_GET_HEAP_ADDR_SIZE, &as);
	st = map_fw_heap(fd, &heap);
	if (!check("heap.map", st == PVZ_OK && heap.size == as.size && heap.ipa && !(heap.ipa & 4095),
		   "status=%s ipa=%#llx size=%#llx policy_size=%#llx", st_str(st), heap.ipa, heap.size, as.size)) {
		struct legacy_fw_heap l = { 0 };

		/* the old driver: a heap to run the mmap cases on */
		if (st != XFAIL(ENOTTY))
			return;
		ioctl(fd, LEGACY_IOC_FREE_FW_HEAP);
		if (ioctl(fd, LEGACY_IOC_ALLOC_FW_HEAP, &l))
			return;
		heap.ipa = l.ipa;
		heap.size = l.size;
	}
	get_config(fd, &c);
	check("heap.config_shows_it", (c.status & PVZ_STATUS_FW_HEAP_MAPPED) && c.fw_heap_ipa == heap.ipa &&
	      c.fw_heap_size == heap.size, "status=%#x fw_heap=%#llx+%#llx", c.status, c.fw_heap_ipa, c.fw_heap_size);
	st = map_fw_heap(fd, &again);
	check("heap.map_twice", st == XFAIL(EEXIST), "got=%s (want EEXIST)", st_str(st));
	printf("PVZINFO heap ipa=%#llx size=%#llx\n", heap.ipa, heap.size);

	/* finding 6: MAP_PRIVATE of the heap was miscounted above 1 GiB */
	m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, PVZ_MMAP_FW_HEAP);
	e = m == MAP_FAILED ? errno : 0;
	check("mmap.private_refused", m == MAP_FAILED && e == EINVAL, "errno=%s (want EINVAL)", err_name(e));
	if (m != MAP_FAILED)
		munmap(m, len);
	/* finding 6: a split mapping leaked a PAT memtype entry */
	m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, PVZ_MMAP_FW_HEAP);
	if (check("mmap.heap", m != MAP_FAILED, "errno=%s", m == MAP_FAILED ? strerror(errno) : "ok")) {
		m[0] = 1;
		rc = munmap(m + len / 2, len / 2);
		e = rc ? errno : 0;
		check("mmap.partial_munmap_refused", rc < 0 && e == EINVAL, "errno=%s (want EINVAL)", err_name(e));
		rc = mprotect(m, 4096, PROT_READ);
		e = rc ? errno : 0;
		check("mmap.partial_mprotect_refused", rc < 0 && e == EINVAL, "errno=%s (want EINVAL)", err_name(e));
		st = unmap_fw_heap(fd);
		check("heap.unmap_busy_while_mmapped", st == XFAIL(EBUSY), "got=%s (want EBUSY)", st_str(st));
		check("mmap.whole_munmap", munmap(m, len) == 0, "errno=%s", strerror(errno));
	}
	m = mmap(NULL, heap.size + 4096, PROT_READ, MAP_SHARED, fd, PVZ_MMAP_FW_HEAP);
	check("mmap.longer_than_heap_refused", m == MAP_FAILED, "errno=%s", m == MAP_FAILED ? strerror(errno) : "mapped");
	m = mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, 4096);
	check("mmap.offset_inside_heap_refused", m == MAP_FAILED, "errno=%s", m == MAP_FAILED ? strerror(errno) : "mapped");
	m = mmap(NULL, VIRTIO_PVZ_REGS_SIZE, PROT_READ, MAP_SHARED, fd, PVZ_MMAP_REGS);
	if (check("mmap.regs", m != MAP_FAILED, "errno=%s", m == MAP_FAILED ? strerror(errno) : "ok")) {
		uint32_t osid = ((volatile uint32_t *)m)[PVZ_REG_OSID / 4];

		check("mmap.regs_mirror", osid == arg.osid, "osid=%u want %u", osid, arg.osid);
		rc = munmap(m + 4096, 4096);
		e = rc ? errno : 0;
		check("mmap.regs_partial_munmap_refused", rc < 0 && e == EINVAL, "errno=%s", err_name(e));
		munmap(m, VIRTIO_PVZ_REGS_SIZE);
	}
	m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, PVZ_MMAP_REGS);
	check("mmap.regs_write_refused", m == MAP_FAILED, "errno=%s", m == MAP_FAILED ? strerror(errno) : "mapped");
}

/* finding 6: the eventq interrupt handler had no budget. 48 IRQ commands in
 * one kick (fewer than the 64 buffers posted on this boot): every event arrives, and the handler deferred work rather than
 * looping in interrupt context (event_budget=4 on this boot). */
static void case_event_budget(int fd)
{
	struct pvz_config c0, c1;
	struct pvz_event ev[64];
	struct pvz_kick k;
	volatile uint8_t *m;
	unsigned int i, n_irq = 48, irq_seen = 0, done = 0;
	__u64 end;
	char budget[32] = "?";

	if (!heap.ipa)
		return;
	read_file("/sys/module/virtio_pvz/parameters/event_budget", budget, sizeof(budget));
	m = mmap(NULL, 64 << 10, PROT_READ | PROT_WRITE, MAP_SHARED, fd, PVZ_MMAP_FW_HEAP);
	if (!check("events.mmap", m != MAP_FAILED, "errno=%s", m == MAP_FAILED ? strerror(errno) : "ok"))
		return;
	memset((void *)m, 0, PVZ_RING_HDR_SIZE + 8192);
	*(volatile uint32_t *)(m + PVZ_RING_OFF_SIZE) = 8192;
	for (i = 0; i < n_irq; i++) {
		struct pvz_cmd cmd = { .op = PVZ_OP_IRQ, .seq = i + 1, .arg0 = 0xB0000000u + i };

		memcpy((void *)(m + PVZ_RING_HDR_SIZE + i * PVZ_CMD_SIZE), &cmd, sizeof(cmd));
	}
	*(volatile uint32_t *)(m + PVZ_RING_OFF_WRITE) = n_irq * PVZ_CMD_SIZE;
	__atomic_store_n((uint32_t *)(m + PVZ_RING_OFF_MAGIC), PVZ_RING_MAGIC, __ATOMIC_RELEASE);
	{
		struct pollfd p = { .fd = fd, .events = POLLIN };

		while (poll(&p, 1, 0) == 1 && (p.revents & POLLIN) && read(fd, ev, sizeof(ev)) > 0)
			;
	}
	get_config(fd, &c0);
	k.write_offset = n_irq * PVZ_CMD_SIZE;
	k.flags = 0;
	check("events.kick", ioctl(fd, PVZ_IOC_KICK, &k) == 0, "errno=%s", strerror(errno));
	end = now_ns() + 15000000000ull;
	while (now_ns() < end && !(irq_seen >= n_irq && done)) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		ssize_t r;

		if (poll(&p, 1, 200) <= 0)
			continue;
		r = read(fd, ev, sizeof(ev));
		for (i = 0; r > 0 && i < (unsigned int)(r / (ssize_t)sizeof(ev[0])); i++) {
			if (ev[i].type == PVZ_EVENT_FIRMWARE && (ev[i].code & 0xF0000000u) == 0xB0000000u)
				irq_seen++;
			else if (ev[i].type == PVZ_EVENT_FIRMWARE && ev[i].code == PVZ_FW_EVENT_KICK_DONE)
				done++;
		}
	}
	get_config(fd, &c1);
	check("events.all_delivered", irq_seen == n_irq && done == 1 && c1.events_malformed == c0.events_malformed,
	      "irq_events=%u/%u completions=%u dropped=%llu malformed=%llu", irq_seen, n_irq, done,
	      c1.events_dropped - c0.events_dropped, c1.events_malformed - c0.events_malformed);
	check("events.budget_deferred", c1.events_deferred > c0.events_deferred,
	      "deferred=%llu event_budget=%s", c1.events_deferred - c0.events_deferred, budget);
	munmap((void *)m, 64 << 10);
}

/* ---- basic: malformed ioctls ---- */

static bool known_cmd(unsigned long cmd)
{
	static const unsigned long known[] = { PVZ_IOC_GET_CONFIG, PVZ_IOC_CREATE_DEV_CONFIG,
		PVZ_IOC_DESTROY_DEV_CONFIG, PVZ_IOC_CREATE_DEV_PHYS_HEAPS, PVZ_IOC_DESTROY_DEV_PHYS_HEAPS,
		PVZ_IOC_GET_HEAP_ORIGIN, PVZ_IOC_GET_HEAP_ADDR_SIZE, PVZ_IOC_READ_REG, PVZ_IOC_WRITE_REG,
		PVZ_IOC_RAW, PVZ_IOC_KICK, PVZ_IOC_MAP_FW_HEAP, PVZ_IOC_UNMAP_FW_HEAP };
	size_t i;

	for (i = 0; i < sizeof(known) / sizeof(known[0]); i++)
		if (known[i] == cmd)
			return true;
	return false;
}

static void case_malformed(int fd)
{
	static uint8_t buf[16384] __attribute__((aligned(64)));
	void *ptrs[] = { NULL, (void *)1, (void *)0xFFFF888000000000ull, (void *)0x7FFFFFFFF000ull, buf,
			 buf + sizeof(buf) - 8 };
	unsigned int sizes[] = { 0, 1, 8, 16, 24, 40, 56, 64, 200, 528, 1024, 16383 };
	unsigned int dirs[] = { _IOC_NONE, _IOC_READ, _IOC_WRITE, _IOC_READ | _IOC_WRITE };
	unsigned long calls = 0, unknown_ok = 0, fault_ok = 0, heap_ops = 0;
	unsigned int nr, d, s, p, seed = 12345;
	uint32_t v = 0;
	ssize_t r;

	for (nr = 0; nr < 0x40; nr++) {
		if (nr == 0x30)
			continue; /* DEBUG_BREAK_RING: its own case */
		for (d = 0; d < 4; d++)
			for (s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++)
				for (p = 0; p < sizeof(ptrs) / sizeof(ptrs[0]); p++) {
					unsigned long cmd = _IOC(dirs[d], PVZ_IOC_MAGIC, nr, sizes[s]);
					unsigned int i;
					int rc;

					if (cmd == PVZ_IOC_MAP_FW_HEAP || cmd == PVZ_IOC_UNMAP_FW_HEAP)
						heap_ops++;
					for (i = 0; i < sizeof(buf); i += 4) {
						seed = seed * 1103515245u + 12345u;
						memcpy(buf + i, &seed, 4);
					}
					/* keep kicks and register writes harmless */
					if (cmd == PVZ_IOC_KICK)
						memset(buf, 0, 8);
					if (cmd == PVZ_IOC_WRITE_REG)
						((struct pvz_reg *)buf)->offset = PVZ_REG_SCRATCH;
					rc = ioctl(fd, cmd, ptrs[p]);
					calls++;
					if (rc == 0 && !known_cmd(cmd))
						unknown_ok++;
					if (rc == 0 && known_cmd(cmd) && _IOC_SIZE(cmd) && ptrs[p] != buf &&
					    ptrs[p] != buf + sizeof(buf) - 8)
						fault_ok++;
				}
	}
	/* other commands in other magic spaces */
	for (nr = 0; nr < 256; nr++) {
		if (ioctl(fd, _IOC(_IOC_READ | _IOC_WRITE, nr, 0x01, 64), buf) == 0)
			unknown_ok++;
		calls++;
	}
	check("malformed.ioctls", unknown_ok == 0 && fault_ok == 0,
	      "calls=%lu unknown_accepted=%lu bad_pointer_accepted=%lu", calls, unknown_ok, fault_ok);
	r = read(fd, buf, 8);
	check("malformed.read_short", r < 0 && errno == EINVAL, "r=%zd errno=%s", r, strerror(errno));
	r = syscall(SYS_read, fd, (void *)0, 64);
	check("malformed.read_null", r < 0, "r=%zd errno=%s", r, strerror(errno));
	r = write(fd, buf, 16);
	check("malformed.write", r < 0, "r=%zd errno=%s", r, strerror(errno));
	check("malformed.lseek", lseek(fd, 16, SEEK_SET) < 0, "errno=%s", strerror(errno));
	check("malformed.device_still_answers", read_reg(fd, PVZ_REG_CORE_ID, &v) == PVZ_OK && v == PVZ_CORE_ID_V1,
	      "core_id=%#x", v);
	/* leave no heap from the random MAP_FW_HEAP calls */
	unmap_fw_heap(fd);
	printf("PVZINFO malformed heap_ops=%lu\n", heap_ops);
}

/* ---- basic: threads, close during calls, killed callers ---- */

struct rand_thread {
	int fd;
	unsigned int seed;
	__u64 end;
	unsigned long ops, bad;
	char last_bad[96];
};

static void *rand_worker(void *a)
{
	struct rand_thread *t = a;
	int fd = t->fd;
	bool own = false;

	while (now_ns() < t->end) {
		unsigned int op = rand_r(&t->seed) % 12, st = PVZ_OK;
		struct pvz_fw_heap h;
		void *m;

		switch (op) {
		case 0: case 1: case 2:
			st = read_reg(fd, PVZ_REG_CORE_ID, NULL);
			break;
		case 3: {
			struct pvz_reg r = { .offset = PVZ_REG_SCRATCH, .value = t->seed };

			st = ioctl(fd, PVZ_IOC_WRITE_REG, &r) < 0 ? XFAIL(errno) : r.hdr.status;
			break;
		}
		case 4: {
			struct pvz_config c;

			st = get_config(fd, &c) ? XFAIL(errno) : PVZ_OK;
			break;
		}
		case 5:
			st = map_fw_heap(fd, &h);
			if (st == XFAIL(EEXIST) || st == XFAIL(ENOMEM))
				st = PVZ_OK;
			break;
		case 6:
			st = unmap_fw_heap(fd);
			if (st == XFAIL(EBUSY) || st == PVZ_NOT_FOUND)
				st = PVZ_OK;
			break;
		case 7:
			m = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_SHARED, fd, PVZ_MMAP_FW_HEAP);
			if (m != MAP_FAILED) {
				((volatile uint8_t *)m)[rand_r(&t->seed) % (1 << 20)] = 1;
				munmap(m, 1 << 20);
			} else if (errno != ENOMEM && errno != EINVAL) {
				st = XFAIL(errno);
			}
			break;
		case 8: {
			struct pvz_event ev[4];
			int fl = fcntl(fd, F_GETFL);

			fcntl(fd, F_SETFL, fl | O_NONBLOCK);
			if (read(fd, ev, sizeof(ev)) < 0 && errno != EAGAIN)
				st = XFAIL(errno);
			fcntl(fd, F_SETFL, fl);
			break;
		}
		case 9: {
			struct pvz_dev_config d = { 0 };
			struct pvz_call_hdr hd = { 0 };

			if (rand_r(&t->seed) & 1)
				st = ioctl(fd, PVZ_IOC_CREATE_DEV_CONFIG, &d) < 0 ? XFAIL(errno) : PVZ_OK;
			else
				st = ioctl(fd, PVZ_IOC_DESTROY_DEV_CONFIG, &hd) < 0 ? XFAIL(errno) : PVZ_OK;
			break;
		}
		case 10: /* close and reopen this thread's own file */
			if (own)
				close(fd);
			fd = open_pvz();
			own = fd >= 0;
			if (!own) {
				st = XFAIL(errno);
				fd = t->fd;
			}
			break;
		default: {
			m = mmap(NULL, VIRTIO_PVZ_REGS_SIZE, PROT_READ, MAP_SHARED, fd, PVZ_MMAP_REGS);
			if (m == MAP_FAILED)
				st = XFAIL(errno);
			else
				munmap(m, VIRTIO_PVZ_REGS_SIZE);
			break;
		}
		}
		t->ops++;
		if (st != PVZ_OK && st != PVZ_ALREADY_EXISTS && st != PVZ_NOT_FOUND) {
			t->bad++;
			snprintf(t->last_bad, sizeof(t->last_bad), "op %u: %s", op, st_str(st));
		}
	}
	if (own)
		close(fd);
	return NULL;
}

static void case_threads(int fd, unsigned int nthreads, unsigned int seconds)
{
	struct rand_thread t[8];
	pthread_t th[8];
	unsigned long ops = 0, bad = 0;
	struct pvz_config c;
	unsigned int i;
	char last[96] = "";

	if (nthreads > 8)
		nthreads = 8;
	for (i = 0; i < nthreads; i++) {
		memset(&t[i], 0, sizeof(t[i]));
		t[i].fd = fd;
		t[i].seed = 777 + i;
		t[i].end = now_ns() + seconds * 1000000000ull;
		pthread_create(&th[i], NULL, rand_worker, &t[i]);
	}
	for (i = 0; i < nthreads; i++) {
		pthread_join(th[i], NULL);
		ops += t[i].ops;
		bad += t[i].bad;
		if (t[i].bad)
			memcpy(last, t[i].last_bad, sizeof(last));
	}
	check("threads.random_ops", ops > 100 && bad == 0, "threads=%u ops=%lu bad=%lu %s", nthreads, ops, bad, last);
	/* whatever state the threads left, the heap can be taken back */
	unmap_fw_heap(fd);
	check("threads.heap_released", get_config(fd, &c) == 0 && !(c.status & PVZ_STATUS_FW_HEAP_MAPPED),
	      "status=%#x", c.status);
}

struct loop_arg { int fd; volatile bool stop; unsigned long ok, fail, fail_with_id; __u32 max_fail_id; int last_err; };

static void *call_loop(void *a)
{
	struct loop_arg *l = a;

	while (!l->stop) {
		struct pvz_reg r = { .offset = PVZ_REG_CORE_ID };
		unsigned int st = ioctl(l->fd, PVZ_IOC_READ_REG, &r) < 0 ? XFAIL(errno) : r.hdr.status;

		if (st == PVZ_OK) {
			l->ok++;
		} else {
			l->fail++;
			if (r.hdr.request_id) {
				l->fail_with_id++;   /* it had reached the ring */
				if (r.hdr.request_id > l->max_fail_id)
					l->max_fail_id = r.hdr.request_id;
			}
			l->last_err = st >= 100 ? (int)st - 100 : 0;
			if (st >= 100 && (st == XFAIL(EBADF) || st == XFAIL(ENODEV)))
				msleep(10);
		}
	}
	return NULL;
}

static void case_close_during_calls(void)
{
	struct loop_arg l[4];
	pthread_t th[4];
	int round, i, fd, v = 0;
	unsigned long ok = 0, fail = 0;
	bool odd_error = false;

	for (round = 0; round < 10; round++) {
		fd = open_pvz();
		for (i = 0; i < 4; i++) {
			memset(&l[i], 0, sizeof(l[i]));
			l[i].fd = i & 1 ? dup(fd) : fd;
			pthread_create(&th[i], NULL, call_loop, &l[i]);
		}
		msleep(30);
		close(fd);   /* the threads' calls hold the file; later calls see EBADF */
		msleep(20);
		for (i = 0; i < 4; i++) {
			l[i].stop = true;
			pthread_join(th[i], NULL);
			if (i & 1)
				close(l[i].fd);
			ok += l[i].ok;
			fail += l[i].fail;
			if (l[i].fail && l[i].last_err != EBADF)
				odd_error = true;
		}
	}
	check("close.during_calls", ok > 0 && !odd_error, "calls_ok=%lu failed=%lu (EBADF after close only)", ok, fail);

	/* callers SIGKILLed in the middle of calls */
	for (round = 0; round < 10; round++) {
		pid_t pid = fork();

		if (pid == 0) {
			int f = open_pvz();

			for (;;)
				read_reg(f, PVZ_REG_CORE_ID, NULL);
		}
		msleep(20 + 7 * round);
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
	}
	fd = open_pvz();
	{
		struct pvz_config c;
		unsigned int st = read_reg(fd, PVZ_REG_CORE_ID, (uint32_t *)&v);

		get_config(fd, &c);
		check("kill.killed_callers", st == PVZ_OK && c.call_protocol_errors == 0,
		      "status=%s protocol_errors=%llu timeouts=%llu", st_str(st), c.call_protocol_errors, c.call_timeouts);
	}
	close(fd);
}

/* ---- basic: unbind and rebind with files open ---- */

struct reader_arg { int fd; ssize_t r; int err; };

static void *blocking_reader(void *a)
{
	struct reader_arg *r = a;
	struct pvz_event ev;

	r->r = read(r->fd, &ev, sizeof(ev));
	r->err = r->r < 0 ? errno : 0;
	return NULL;
}

static void case_unbind_rebind(void)
{
	char vname[64], path[256];
	struct reader_arg rd;
	struct loop_arg l;
	pthread_t th_r, th_l;
	struct pvz_fw_heap h;
	struct pvz_config c;
	__u64 t0, ms;
	volatile uint8_t *m;
	int fd, e;
	unsigned int st;
	void *m2;

	if (!check("unbind.find_device", find_virtio_dev(vname, sizeof(vname)), "virtio device with ID %u",
		   VIRTIO_ID_PVZ))
		return;
	fd = open_pvz();
	st = map_fw_heap(fd, &h);
	m = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_SHARED, fd, PVZ_MMAP_FW_HEAP);
	check("unbind.setup", fd >= 0 && st == PVZ_OK && m != MAP_FAILED, "map=%s mmap=%s", st_str(st),
	      m == MAP_FAILED ? strerror(errno) : "ok");
	rd.fd = fd;
	pthread_create(&th_r, NULL, blocking_reader, &rd);
	memset(&l, 0, sizeof(l));
	l.fd = fd;
	pthread_create(&th_l, NULL, call_loop, &l);
	msleep(50);
	t0 = now_ns();
	e = write_file(DRV_DIR "/unbind", vname);
	ms = (now_ns() - t0) / 1000000;
	check("unbind.done", e == 0 && !wait_node(true, 0), "errno=%s took=%llums", err_name(e), (unsigned long long)ms);
	msleep(50);
	l.stop = true;
	pthread_join(th_l, NULL);
	pthread_join(th_r, NULL);
	check("unbind.calls_fail_enodev", l.last_err == ENODEV, "last_errno=%s ok=%lu failed=%lu",
	      err_name(l.last_err), l.ok, l.fail);
	check("unbind.blocked_read_woken", rd.r < 0 && rd.err == ENODEV, "r=%zd errno=%s", rd.r, err_name(rd.err));
	e = get_config(fd, &c);
	check("unbind.get_config_enodev", e == ENODEV, "errno=%s", err_name(e));
	m2 = mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, PVZ_MMAP_REGS);
	e = m2 == MAP_FAILED ? errno : 0;
	check("unbind.mmap_refused", m2 == MAP_FAILED && e == ENODEV, "errno=%s (want ENODEV)", err_name(e));
	{
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int n = poll(&p, 1, 0);

		check("unbind.poll_hup", n == 1 && (p.revents & POLLHUP), "n=%d revents=%#x", n, p.revents);
	}
	if (m != MAP_FAILED) {
		m[4096] = 0x5A; /* still ours: the driver keeps the pages while mapped */
		munmap((void *)m, 1 << 20);
	}
	close(fd);
	snprintf(path, sizeof(path), DRV_DIR "/bind");
	e = write_file(path, vname);
	check("rebind.done", e == 0 && wait_node(true, 10000), "errno=%s", err_name(e));
	fd = open_pvz();
	e = get_config(fd, &c);
	/* finding 4: remove leaves nothing mapped or created in the device */
	check("rebind.config_clean", !e && !(c.status & (PVZ_STATUS_FW_HEAP_MAPPED | PVZ_STATUS_DEV_CONFIG)) &&
	      !c.fw_heap_ipa, "errno=%s status=%#x fw_heap_ipa=%#llx", err_name(e), c.status, c.fw_heap_ipa);
	st = read_reg(fd, PVZ_REG_CORE_ID, NULL);
	check("rebind.calls_work", st == PVZ_OK, "status=%s", st_str(st));
	close(fd);
}

static void phase_basic(void)
{
	int fd = open_pvz();

	if (!check("basic.open", fd >= 0, "errno=%s", fd < 0 ? strerror(errno) : "ok"))
		return;
	case_privileges(fd);
	case_retired_and_raw(fd);
	case_request_ids(fd);
	case_heap(fd);
	case_event_budget(fd);
	{
		unsigned int st = unmap_fw_heap(fd);
		struct pvz_config c;

		get_config(fd, &c);
		check("heap.unmap", st == PVZ_OK && !(c.status & PVZ_STATUS_FW_HEAP_MAPPED) && !c.fw_heap_ipa,
		      "status=%s config_status=%#x", st_str(st), c.status);
		st = unmap_fw_heap(fd);
		check("heap.unmap_twice", st == XFAIL(ENOENT) || st == PVZ_NOT_FOUND, "got=%s", st_str(st));
	}
	case_malformed(fd);
	case_threads(fd, 6, 8);
	close(fd);
	case_close_during_calls();
	case_unbind_rebind();
}

/* ---- debug: stray mappings, heap freed while mapped, broken ring ---- */

static void case_stray_mapping(void)
{
	char vname[64];
	__u64 ipa = 0, size = 0;
	bool mapped = false;
	struct pvz_config c;
	unsigned int st;
	int fd = open_pvz(), e;

	if (!get_heap(fd, &ipa, &size, &mapped)) {
		check("stray.setup", false, "no heap");
		close(fd);
		return;
	}
	/* A mapping the driver did not make itself (debug RAW, or a previous
	 * kernel): unbind must still take it away from the device. */
	if (mapped)
		raw_call(fd, PVZ_FN_UNMAP_DEV_PHYS_HEAP, NULL, 0, 0);
	st = raw_map(fd, ipa, size);
	check("stray.raw_map", st == PVZ_OK, "status=%s ipa=%#llx", st_str(st), (unsigned long long)ipa);
	close(fd);
	find_virtio_dev(vname, sizeof(vname));
	write_file(DRV_DIR "/unbind", vname);
	e = write_file(DRV_DIR "/bind", vname);
	wait_node(true, 10000);
	fd = open_pvz();
	e = e ? e : get_config(fd, &c);
	check("stray.unbind_unmaps", !e && !(c.status & PVZ_STATUS_FW_HEAP_MAPPED),
	      "errno=%s status=%#x fw_heap_ipa=%#llx", err_name(e), c.status, c.fw_heap_ipa);
	close(fd);
}

/* finding 3: the heap went back to the page allocator while config space
 * still showed the device mapping it. */
static void case_free_while_device_maps(void)
{
	__u64 ipa = 0, size = 0;
	bool mapped = false, busy;
	unsigned int st;
	int fd = open_pvz(), rc;

	if (!get_heap(fd, &ipa, &size, &mapped)) {
		check("free_mapped.setup", false, "no heap");
		close(fd);
		return;
	}
	if (mapped)
		raw_call(fd, PVZ_FN_UNMAP_DEV_PHYS_HEAP, NULL, 0, 0);
	/* the device maps the heap behind the driver's back */
	st = raw_map(fd, ipa, size);
	check("free_mapped.raw_map", st == PVZ_OK, "status=%s", st_str(st));
	st = unmap_fw_heap(fd);
	if (st == XFAIL(ENOTTY)) {
		rc = ioctl(fd, LEGACY_IOC_FREE_FW_HEAP);
		st = rc ? XFAIL(errno) : PVZ_OK;
	}
	busy = config_maps(fd, ipa, size);
	check("free_mapped.never_freed_while_mapped", !(st == PVZ_OK && busy),
	      "unmap/free=%s device_still_maps=%d", st_str(st), busy);
	if (busy)
		raw_call(fd, PVZ_FN_UNMAP_DEV_PHYS_HEAP, NULL, 0, 0);
	unmap_fw_heap(fd);
	close(fd);
}

struct map_arg {
	int fd;
	volatile bool started;
	unsigned int st;
	struct pvz_fw_heap h;
};

static void *map_thread(void *a)
{
	struct map_arg *m = a;

	m->started = true;
	m->st = map_fw_heap(m->fd, &m->h);
	return NULL;
}

/* The device lets go of the heap behind the driver's back; once config space
 * says so, the driver's config-change work has seen it too (the pages stay
 * allocated: a config change never frees them). */
static bool raw_unmap_seen(int fd, __u64 ipa, __u64 size)
{
	int i;

	raw_call(fd, PVZ_FN_UNMAP_DEV_PHYS_HEAP, NULL, 0, 0);
	for (i = 0; i < 100 && config_maps(fd, ipa, size); i++)
		msleep(10);
	msleep(100);
	return !config_maps(fd, ipa, size);
}

/*
 * MAP_FW_HEAP answered with a status other than OK while the device maps the
 * driver's own heap pages (ALREADY_EXISTS): the pages must stay. The state is
 * made with a RAW MAP of the heap that lands inside MAP_FW_HEAP, after it took
 * the heap lock and before its own MAP (while it zeroes the reused heap), so
 * the config change that RAW MAP causes cannot tell the driver first. The
 * race is retried until it is hit (the other outcomes: MAP_FW_HEAP first, or
 * the config change first, which give OK or EEXIST).
 */
static void case_map_refused_keeps_heap(void)
{
	struct map_arg m = { 0 };
	struct pvz_fw_heap h;
	pthread_t th;
	__u64 ipa, size;
	unsigned int st, raw = 0, tries, outcomes[3] = { 0 };
	bool hit = false, kept, busy;
	void *p;
	int fd = open_pvz(), e;

	st = map_fw_heap(fd, &h);
	if (!check("map_refused.setup", st == PVZ_OK, "map=%s", st_str(st))) {
		close(fd);
		return;
	}
	ipa = h.ipa;
	size = h.size;
	for (tries = 1; tries <= 20 && !hit; tries++) {
		if (!raw_unmap_seen(fd, ipa, size))
			break;
		memset(&m, 0, sizeof(m));
		m.fd = fd;
		pthread_create(&th, NULL, map_thread, &m);
		while (!m.started)
			;
		msleep(2);
		raw = raw_map(fd, ipa, size);
		pthread_join(th, NULL);
		if (m.st == PVZ_ALREADY_EXISTS && raw == PVZ_OK)
			hit = true;
		else
			outcomes[m.st == PVZ_OK ? 0 : m.st == XFAIL(EEXIST) ? 1 : 2]++;
	}
	if (!check("map_refused.reached", hit, "MAP_FW_HEAP=%s RAW MAP=%s after %u tries (MAP first %u, config change first %u, other %u)",
		   st_str(m.st), st_str(raw), tries - 1, outcomes[0], outcomes[1], outcomes[2])) {
		unmap_fw_heap(fd);
		close(fd);
		return;
	}
	busy = config_maps(fd, ipa, size);
	p = mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, PVZ_MMAP_FW_HEAP);
	e = p == MAP_FAILED ? errno : 0;
	kept = p != MAP_FAILED;
	if (kept)
		munmap(p, 4096);
	check("map_refused.heap_kept", busy && kept,
	      "device maps %#llx+%#llx: %d; the heap still there (mmap): %s (try %u)", ipa, size, busy,
	      kept ? "yes" : err_name(e), tries - 1);
	st = map_fw_heap(fd, &h);
	check("map_refused.known_mapped", st == XFAIL(EEXIST), "MAP_FW_HEAP again: %s (want EEXIST)", st_str(st));
	st = unmap_fw_heap(fd);
	check("map_refused.unmap", (st == PVZ_OK || st == PVZ_NOT_FOUND) && !config_maps(fd, ipa, size),
	      "unmap=%s", st_str(st));
	close(fd);
}

/* Issue 9: a ring broken on purpose; the driver resets the device itself. */
static void case_break_ring(void)
{
	struct pvz_config c0, c1;
	struct loop_arg l;
	pthread_t th;
	struct pvz_fw_heap h;
	struct pvz_dev_config d = { 0 };
	unsigned int st, errors = 0;
	__u64 t0, end, ms = 0;
	bool back = false;
	int fd = open_pvz(), rc, e;

	st = map_fw_heap(fd, &h);
	rc = ioctl(fd, PVZ_IOC_CREATE_DEV_CONFIG, &d);
	check("break.setup", st == PVZ_OK && rc == 0 && d.hdr.status == PVZ_OK, "map=%s create=%s", st_str(st),
	      rc ? strerror(errno) : st_str(d.hdr.status));
	get_config(fd, &c0);
	memset(&l, 0, sizeof(l));
	l.fd = fd;
	pthread_create(&th, NULL, call_loop, &l);
	msleep(20);
	t0 = now_ns();
	rc = ioctl(fd, PVZ_IOC_DEBUG_BREAK_RING);
	e = rc ? errno : 0;
	check("break.posted", rc == 0, "errno=%s", err_name(e));
	msleep(200);
	l.stop = true;
	pthread_join(th, NULL);
	end = now_ns() + 20000000000ull;
	while (now_ns() < end) {
		st = read_reg(fd, PVZ_REG_CORE_ID, NULL);
		if (st == PVZ_OK) {
			back = true;
			ms = (now_ns() - t0) / 1000000;
			break;
		}
		errors++;
		msleep(100);
	}
	get_config(fd, &c1);
	check("break.recovered", back && c1.device_resets == c0.device_resets + 1,
	      "answered_again=%d after=%llums failed_calls=%u (in flight: ok=%lu failed=%lu last=%s) resets=%u->%u",
	      back, (unsigned long long)ms, errors, l.ok, l.fail, err_name(l.last_err), c0.device_resets,
	      c1.device_resets);
	/* the reset released what the device held; the same file works on */
	check("break.device_state_released", !(c1.status & (PVZ_STATUS_FW_HEAP_MAPPED | PVZ_STATUS_DEV_CONFIG)),
	      "status=%#x", c1.status);
	memset(&d, 0, sizeof(d));
	rc = ioctl(fd, PVZ_IOC_CREATE_DEV_CONFIG, &d);
	check("break.create_again", rc == 0 && d.hdr.status == PVZ_OK, "%s",
	      rc ? strerror(errno) : st_str(d.hdr.status));
	st = unmap_fw_heap(fd);
	if (st == PVZ_NOT_FOUND || st == PVZ_OK)
		st = map_fw_heap(fd, &h);
	check("break.heap_again", st == PVZ_OK, "map=%s", st_str(st));
	unmap_fw_heap(fd);
	memset(&d, 0, sizeof(d));
	ioctl(fd, PVZ_IOC_DESTROY_DEV_CONFIG, &d.hdr);
	close(fd);
}

/*
 * Calls a reset ended return their request ids (EIO). Whether the call loop
 * has a chain on the ring behind the broken one when the device gives up
 * depends on timing: a call made once the reset began fails before it
 * reaches the ring, with id 0. So the ring is broken again (each time the
 * driver recovers) until some failed call returned an id, at most 10 times;
 * every id returned must be one the driver gave out after the break.
 */
static void case_eio_ids(void)
{
	struct pvz_config c0, c1;
	struct loop_arg l;
	pthread_t th;
	unsigned long fails = 0, with_id = 0;
	unsigned int tries, st;
	bool ids_ok = true;
	__u64 end;
	int fd = open_pvz();

	for (tries = 1; tries <= 10 && !with_id; tries++) {
		get_config(fd, &c0);
		memset(&l, 0, sizeof(l));
		l.fd = fd;
		pthread_create(&th, NULL, call_loop, &l);
		msleep(20);
		if (ioctl(fd, PVZ_IOC_DEBUG_BREAK_RING)) {
			l.stop = true;
			pthread_join(th, NULL);
			break;
		}
		msleep(200);
		l.stop = true;
		pthread_join(th, NULL);
		for (end = now_ns() + 20000000000ull; now_ns() < end;) {
			st = read_reg(fd, PVZ_REG_CORE_ID, NULL);
			if (st == PVZ_OK)
				break;
			msleep(100);
		}
		get_config(fd, &c1);
		fails += l.fail;
		with_id += l.fail_with_id;
		if (l.fail_with_id && (l.max_fail_id <= c0.last_request_id || l.max_fail_id > c1.last_request_id))
			ids_ok = false;
	}
	check("ids.eio_returns_id", with_id > 0 && ids_ok,
	      "%lu of %lu calls failed by %u resets returned their request id (ids in range: %d)", with_id, fails,
	      tries - 1, ids_ok);
	close(fd);
}

static void phase_debug(void)
{
	check("debug.reload", reload_module("debug_unsafe=1") == 0, "insmod with debug_unsafe=1");
	case_stray_mapping();
	case_free_while_device_maps();
	case_map_refused_keeps_heap();
	case_break_ring();
	case_eio_ids();
	check("debug.reload_back", reload_module("") == 0, "insmod without debug_unsafe");
}

/* ---- down: the daemon killed under an open file (findings 1, 4, 6) ---- */

static void phase_down(void)
{
	char vname[64], pci[256];
	struct pvz_fw_heap h;
	struct pvz_dev_config d = { 0 };
	struct pvz_config c;
	struct loop_arg l;
	pthread_t th;
	volatile uint8_t *m;
	__u64 t0, ms;
	unsigned int st;
	int fd, e;
	void *m2;
	char tmo[32] = "?";

	read_file("/sys/module/virtio_pvz/parameters/call_timeout_ms", tmo, sizeof(tmo));
	if (!check("down.find_device", find_virtio_dev(vname, sizeof(vname)) && find_pci_dev(vname, pci, sizeof(pci)),
		   "virtio %s", vname))
		return;
	fd = open_pvz();
	st = map_fw_heap(fd, &h);
	if (st == XFAIL(ENOTTY)) {
		/* the old driver: allocate, then MAP with the address */
		struct legacy_fw_heap l = { 0 };
		struct legacy_map_heap lm = { 0 };

		ioctl(fd, LEGACY_IOC_FREE_FW_HEAP);
		if (!ioctl(fd, LEGACY_IOC_ALLOC_FW_HEAP, &l)) {
			lm.size = l.size;
			lm.paddr = l.ipa;
			st = ioctl(fd, LEGACY_IOC_MAP_DEV_PHYS_HEAP, &lm) ? XFAIL(errno) : lm.hdr.status;
			h.ipa = l.ipa;
		}
	}
	ioctl(fd, PVZ_IOC_CREATE_DEV_CONFIG, &d);
	m = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_SHARED, fd, PVZ_MMAP_FW_HEAP);
	check("down.setup", st == PVZ_OK && m != MAP_FAILED, "map=%s heap=%#llx pci=%s call_timeout_ms=%s",
	      st_str(st), h.ipa, pci, tmo);
	if (!check("down.host_killed_daemon", host_wait("kill-daemon", "go", 120), "word from the host"))
		return;
	get_config(fd, &c);
	{
		struct pvz_reg r = { .offset = PVZ_REG_CORE_ID };

		st = ioctl(fd, PVZ_IOC_READ_REG, &r) ? XFAIL(errno) : r.hdr.status;
		check("down.calls_fail", st == XFAIL(ETIMEDOUT), "got=%s (want ETIMEDOUT)", st_str(st));
		/* The request is on the ring (it may still run): its id comes back. */
		check("ids.timeout_returns_id", r.hdr.request_id > c.last_request_id, "request_id=%u (last before %llu)",
		      r.hdr.request_id, c.last_request_id);
	}
	memset(&l, 0, sizeof(l));
	l.fd = fd;
	pthread_create(&th, NULL, call_loop, &l);
	msleep(100);
	/* PCI remove with the file open, the heap mapped by the device and by
	 * this process, and a call in flight: remove cannot UNMAP. */
	t0 = now_ns();
	{
		char path[300];

		snprintf(path, sizeof(path), "%s/remove", pci);
		e = write_file(path, "1");
	}
	ms = (now_ns() - t0) / 1000000;
	check("down.pci_removed", e == 0 && !wait_node(true, 0), "errno=%s", err_name(e));
	/* finding 6: remove used to wait for the call in flight and then for
	 * its own UNMAP, each up to the call timeout */
	check("down.remove_bounded", ms < 1800, "remove took %llums (call_timeout_ms=%s; bound 1800)",
	      (unsigned long long)ms, tmo);
	l.stop = true;
	pthread_join(th, NULL);
	check("down.calls_enodev", l.last_err == ENODEV, "last=%s", err_name(l.last_err));
	e = get_config(fd, &c);
	check("down.get_config_enodev", e == ENODEV, "errno=%s", err_name(e));
	m2 = mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, PVZ_MMAP_REGS);
	e = m2 == MAP_FAILED ? errno : 0;
	check("down.mmap_after_remove_refused", m2 == MAP_FAILED, "errno=%s", err_name(e));
	if (m != MAP_FAILED) {
		m[8192] = 0xA5;
		munmap((void *)m, 1 << 20);
	}
	/* finding 1: the last close ran dev_warn() on the freed virtio device */
	close(fd);
	check("down.last_close_survived", true, "(an oops here kills this process; the host scans the log)");
	if (!check("down.host_restarted_daemon", host_wait("restart-daemon", "go", 120), "word from the host"))
		return;
	/* finding 4: probe takes back whatever config space shows mapped */
	e = write_file("/sys/bus/pci/rescan", "1");
	check("down.rescan", e == 0 && wait_node(true, 15000), "errno=%s", err_name(e));
	fd = open_pvz();
	e = get_config(fd, &c);
	check("down.probe_unmapped_stray", !e && !(c.status & PVZ_STATUS_FW_HEAP_MAPPED) && !c.fw_heap_ipa,
	      "errno=%s status=%#x fw_heap_ipa=%#llx", err_name(e), c.status, c.fw_heap_ipa);
	check("down.probe_destroyed_dev_config", !e && !(c.status & PVZ_STATUS_DEV_CONFIG), "status=%#x", c.status);
	st = read_reg(fd, PVZ_REG_CORE_ID, NULL);
	check("down.calls_work_again", st == PVZ_OK, "status=%s", st_str(st));
	close(fd);
	host_wait("check-ledger", "go", 60);
}

/* ---- unreserved: a carve-out the kernel did not reserve ---- */

static void phase_unreserved(void)
{
	int fd = open_pvz(), e;
	struct pvz_config c;
	void *m;

	get_config(fd, &c);
	m = mmap(NULL, VIRTIO_PVZ_REGS_SIZE, PROT_READ, MAP_SHARED, fd, PVZ_MMAP_REGS);
	e = m == MAP_FAILED ? errno : 0;
	check("unreserved.regs_mmap_refused", m == MAP_FAILED && e == EPERM,
	      "regs_ipa=%#llx errno=%s (want EPERM: not reserved memory)", c.regs_ipa, err_name(e));
	if (m != MAP_FAILED)
		munmap(m, VIRTIO_PVZ_REGS_SIZE);
	check("unreserved.calls_work", read_reg(fd, PVZ_REG_CORE_ID, NULL) == PVZ_OK, "READ_REG");
	close(fd);
}

int main(void)
{
	char *m, *save;
	__u64 t0 = now_ns();

	setvbuf(stdout, NULL, _IOLBF, 0);
	parse_cmdline();
	open_ctl();
	printf("PVZINFO exercise osid=%u mode=%s modargs=%s\n", arg.osid, arg.mode, arg.modargs);
	if (!wait_node(true, 10000))
		check("open", false, "no /dev/pvz");
	for (m = strtok_r(arg.mode, ",", &save); m; m = strtok_r(NULL, ",", &save)) {
		__u64 t = now_ns();

		if (!strcmp(m, "basic"))
			phase_basic();
		else if (!strcmp(m, "debug"))
			phase_debug();
		else if (!strcmp(m, "break"))
			case_break_ring();   /* the module loaded with debug_unsafe=1 already */
		else if (!strcmp(m, "down"))
			phase_down();
		else if (!strcmp(m, "unreserved"))
			phase_unreserved();
		else
			check("mode", false, "unknown mode '%s'", m);
		printf("PVZINFO phase %s took %.1f s\n", m, (now_ns() - t) / 1e9);
	}
	printf("PVZINFO exercise_s=%.2f\n", (now_ns() - t0) / 1e9);
	printf("%u passed, %u failed\n", passed, failed);
	return failed ? 1 : 0;
}
