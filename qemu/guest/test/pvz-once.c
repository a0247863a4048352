// SPDX-License-Identifier: MIT
/*
 * pvz-once: exactly-once calls across daemon restarts (scripts/vm-test g,
 * issue 17). Loops CREATE_DEV_CONFIG, CREATE_DEV_PHYS_HEAPS (when the device
 * offers HOST_HEAPS), MAP_FW_HEAP, UNMAP_FW_HEAP, DESTROY_DEV_PHYS_HEAPS,
 * DESTROY_DEV_CONFIG while the host SIGKILLs and restarts the daemon. Every
 * call is made once and its answer is known in advance from the answers
 * before it: OK. ALREADY_EXISTS or NOT_FOUND means a call ran twice or never
 * (what a restart without in-flight tracking does); any other status is
 * wrong too. After every OK, config space (the daemon's view of the ledger:
 * status bits DEV_CONFIG and FW_HEAP_MAPPED, fw_heap_ipa/size) must agree.
 *
 * Transport errors are not answers: ETIMEDOUT (no answer within the
 * driver's call_timeout_ms; the chain stays with the device and may still
 * run), EIO (a device reset ended the call), EINTR, ENODEV, EPROTO, and
 * EBUSY from UNMAP_FW_HEAP (UNMAP was answered, but the driver's re-read of
 * config space still showed the heap mapped: a daemon killed right after
 * answering leaves QEMU returning its last copy, so the driver keeps the
 * pages). They are counted apart, and since the call's outcome is then
 * unknown the program
 * resyncs: waits until the device answers READ_REG (calls are served in
 * ring order, so an abandoned chain has run by then), then UNMAP,
 * DESTROY_DEV_PHYS_HEAPS and DESTROY_DEV_CONFIG accepting OK or NOT_FOUND
 * (those answers are logged as resync calls and not judged).
 *
 * Command line: pvz.loop_s=S (stop after S seconds, default 600),
 * pvz.once_cycles=N (stop after N cycles, default 0: no bound). With a
 * second serial port (/dev/ttyS1, the host's line, see vm-test ctl_send)
 * it also stops on the line "stop", then holds: creates the device config
 * and heaps and maps the firmware heap, prints PVZHEAP lines and
 * "PVZREADY once-hold", waits for "go-hold", destroys everything, prints
 * "PVZREADY once-empty" and waits for "go-empty", so the host can compare
 * the daemon's ledger with what this program holds at both points.
 *
 * Output: PVZREADY once; "PVZONCE progress ..." every 10 s; PVZLOG lines
 * with every ledger-changing call as id:op:status (op 0..5 in the order
 * above, "r" before a resync call, status E<errno> for a transport error,
 * id 0 when the driver returned no id: an old driver's failed call, or one
 * that never reached the ring); PVZTEST checks; the counts line
 * "PVZONCE cycles=.. calls=.. ok=.. already_exists=.. not_found=..
 * other_status=.. transport_errors=.. ..." and "N passed, N failed".
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>
#include "virtio_pvz_uapi.h"
#include "pvz_regs.h"

static int fd = -1, ctl = -1;
static unsigned int passed, failed;
static unsigned int loop_s = 600, max_cycles;
static bool host_heaps;

enum op { OP_CREATE_CFG, OP_CREATE_HEAPS, OP_MAP, OP_UNMAP, OP_DESTROY_HEAPS, OP_DESTROY_CFG, OP_N };
static const char *const op_name[OP_N] = { "create_dev_config", "create_dev_phys_heaps",
	"map_fw_heap", "unmap_fw_heap", "destroy_dev_phys_heaps", "destroy_dev_config" };
#define NSTATUS (PVZ_STATUS_MAX + 1)

static const char *st_name(int s)
{
	static const char *const n[NSTATUS] = { "OK", "NOT_IMPLEMENTED", "INVALID_PARAMS",
		"OUT_OF_MEMORY", "INVALID_OSID", "ALREADY_EXISTS", "NOT_FOUND",
		"ADDRESS_OUT_OF_RANGE", "MALFORMED_REQUEST", "VM_OFFLINE", "INVALID_PVZ_CONFIG" };
	return s >= 0 && s < NSTATUS ? n[s] : "?";
}

static bool check(const char *name, bool ok, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static bool check(const char *name, bool ok, const char *fmt, ...)
{
	va_list ap;

	printf("PVZTEST %s %s ", name, ok ? "PASS" : "FAIL");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	if (ok)
		passed++;
	else
		failed++;
	return ok;
}

static unsigned long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (unsigned long long)ts.tv_sec * 1000ull + ts.tv_nsec / 1000000;
}

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
		if (!strncmp(tok, "pvz.loop_s=", 11))
			loop_s = strtoul(tok + 11, NULL, 0);
		else if (!strncmp(tok, "pvz.once_cycles=", 16))
			max_cycles = strtoul(tok + 16, NULL, 0);
	}
}

/* ---- the host's line (ttyS1) ---- */

static char ctl_buf[128];
static size_t ctl_len;

static void ctl_open(void)
{
	struct termios t;

	ctl = open("/dev/ttyS1", O_RDONLY | O_NOCTTY | O_NONBLOCK);
	if (ctl < 0)
		return;
	/* Lines, no echo back to the host's socket. */
	if (!tcgetattr(ctl, &t)) {
		t.c_lflag &= ~(ECHO | ECHONL);
		t.c_lflag |= ICANON;
		tcsetattr(ctl, TCSANOW, &t);
	}
}

/* The next line from the host within ms (-1: wait for ever), or NULL. */
static const char *ctl_line(int ms)
{
	static char line[128];
	unsigned long long end = ms < 0 ? 0 : now_ms() + ms;

	if (ctl < 0)
		return NULL;
	for (;;) {
		char *nl = memchr(ctl_buf, '\n', ctl_len);
		struct pollfd p = { .fd = ctl, .events = POLLIN };
		long long left;
		ssize_t n;

		if (nl) {
			size_t l = nl - ctl_buf;

			memcpy(line, ctl_buf, l);
			line[l] = 0;
			if (l && line[l - 1] == '\r')
				line[l - 1] = 0;
			memmove(ctl_buf, nl + 1, ctl_len - l - 1);
			ctl_len -= l + 1;
			if (!line[0])
				continue;
			printf("PVZGOT %s\n", line);
			return line;
		}
		if (ctl_len == sizeof(ctl_buf))
			ctl_len = 0;   /* no newline in 128 bytes: not a line of ours */
		left = ms < 0 ? 1000 : (long long)end - (long long)now_ms();
		if (left < 0)
			return NULL;
		if (poll(&p, 1, (int)left) > 0) {
			n = read(ctl, ctl_buf + ctl_len, sizeof(ctl_buf) - ctl_len);
			if (n > 0)
				ctl_len += n;
			else
				usleep(100000);
		} else if (ms >= 0 && (long long)now_ms() >= (long long)end) {
			return NULL;
		}
	}
}

static void ctl_wait(const char *want)
{
	const char *l;

	while ((l = ctl_line(-1)) && strcmp(l, want))
		printf("PVZINFO once ignored line '%s' (waiting for '%s')\n", l, want);
}

/* ---- calls ---- */

struct answer {
	unsigned int id;
	unsigned char op;
	bool resync;
	short st;          /* PVZ status, or -errno for a transport error */
};
static struct answer *alog;
static size_t alog_len, alog_cap, alog_printed;

static struct {
	unsigned long long calls, st[NSTATUS], transport;
} count[OP_N];
static unsigned long long calls, ok_answers, bad_status[NSTATUS], transport, resync_calls, resyncs;
static unsigned long long slow_calls, max_call_ms, config_rechecks, config_mismatches, cycles;
static unsigned long long readreg_waits;   /* READ_REGs sent by resyncs */
static unsigned long long err_timedout, err_io, err_intr, err_nodev, err_proto, err_busy, err_other;
static unsigned int bad_lines;

/* What this program made, from the answers it saw. */
static struct {
	bool cfg, heaps, fw;
	__u64 fw_ipa, fw_size, gpu_ipa, gpu_size;
} model;

static union {
	struct pvz_dev_config cfg;
	struct pvz_phys_heaps heaps;
	struct pvz_fw_heap fw;
	struct pvz_call_hdr hdr;
} arg;

static void log_answer(unsigned int id, enum op op, bool resync, int st)
{
	if (alog_len == alog_cap) {
		size_t cap = alog_cap ? alog_cap * 2 : 4096;
		struct answer *n = realloc(alog, cap * sizeof(*n));

		if (!n)
			return;   /* the log is a check aid; the counts stay exact */
		alog = n;
		alog_cap = cap;
	}
	alog[alog_len++] = (struct answer){ .id = id, .op = op, .resync = resync, .st = (short)st };
}

static void print_log(void)
{
	size_t i;
	int k = 0;

	for (i = alog_printed; i < alog_len; i++) {
		const struct answer *a = &alog[i];

		if (!k)
			printf("PVZLOG");
		if (a->st < 0)
			printf(" %u:%s%u:E%d", a->id, a->resync ? "r" : "", a->op, -a->st);
		else
			printf(" %u:%s%u:%d", a->id, a->resync ? "r" : "", a->op, a->st);
		if (++k == 16) {
			printf("\n");
			k = 0;
		}
	}
	if (k)
		printf("\n");
	alog_printed = alog_len;
}

/* One ioctl: the PVZ status, or -errno. */
static int call(enum op op, bool resync)
{
	static const unsigned long cmd[OP_N] = { PVZ_IOC_CREATE_DEV_CONFIG, PVZ_IOC_CREATE_DEV_PHYS_HEAPS,
		PVZ_IOC_MAP_FW_HEAP, PVZ_IOC_UNMAP_FW_HEAP, PVZ_IOC_DESTROY_DEV_PHYS_HEAPS,
		PVZ_IOC_DESTROY_DEV_CONFIG };
	unsigned long long t0, ms;
	int r, st;

	memset(&arg, 0, sizeof(arg));
	t0 = now_ms();
	r = ioctl(fd, cmd[op], &arg);
	st = r < 0 ? -errno : (int)arg.hdr.status;
	ms = now_ms() - t0;
	calls++;
	count[op].calls++;
	if (resync)
		resync_calls++;
	if (ms > max_call_ms)
		max_call_ms = ms;
	if (ms >= 300)
		slow_calls++;   /* most likely waited out a daemon restart */
	/* A failed call still carries its request id when it reached the ring
	 * (0 from a driver that returns none, or when it never did). */
	log_answer(arg.hdr.request_id, op, resync, st);
	if (st < 0) {
		transport++;
		count[op].transport++;
		switch (-st) {
		case ETIMEDOUT: err_timedout++; break;
		case EIO: err_io++; break;
		case EINTR: err_intr++; break;
		case ENODEV: err_nodev++; break;
		case EPROTO: err_proto++; break;
		case EBUSY: err_busy++; break;
		default: err_other++; break;
		}
		printf("PVZINFO once transport error: %s%s after %llu ms: %s (cycle %llu)\n",
		       resync ? "resync " : "", op_name[op], ms, strerror(-st), cycles);
		return st;
	}
	if (st < NSTATUS)
		count[op].st[st]++;
	if (!resync) {
		if (st == PVZ_OK)
			ok_answers++;
		else if (st < NSTATUS)
			bad_status[st]++;
		if (st != PVZ_OK && bad_lines++ < 40)
			printf("PVZINFO once wrong answer: %s request %u answered %s after %llu ms (cycle %llu)\n",
			       op_name[op], arg.hdr.request_id, st_name(st), ms, cycles);
	}
	return st;
}

/* Config space is the daemon's ledger as the guest sees it: after each OK it
 * must show what the answers say. A config read while the daemon is away
 * returns the last config QEMU read (patch 0002), so a mismatch is looked at
 * again for a while before it counts. */
static void verify_config(const char *after)
{
	unsigned long long end = now_ms() + 15000;
	struct pvz_config c;
	bool cfg = false, fw = false, match = false;

	do {
		memset(&c, 0, sizeof(c));
		if (!ioctl(fd, PVZ_IOC_GET_CONFIG, &c)) {
			cfg = !!(c.status & PVZ_STATUS_DEV_CONFIG);
			fw = !!(c.status & PVZ_STATUS_FW_HEAP_MAPPED);
			match = cfg == model.cfg && fw == model.fw &&
				(!fw || (c.fw_heap_ipa == model.fw_ipa && c.fw_heap_size == model.fw_size));
			if (match)
				return;
		}
		config_rechecks++;
		usleep(20000);
	} while (now_ms() < end);
	config_mismatches++;
	if (config_mismatches <= 10)
		printf("PVZINFO once config mismatch after %s (cycle %llu): status=%#x fw=%#llx+%#llx, answers say dev_config=%d fw_heap=%d %#llx+%#llx\n",
		       after, cycles, c.status, c.fw_heap_ipa, c.fw_heap_size, model.cfg, model.fw,
		       model.fw_ipa, model.fw_size);
}

/* Until the device answers a call that changes nothing: every chain queued
 * before it (an abandoned one included) has been served by then. */
static void wait_answering(void)
{
	unsigned long long end = now_ms() + 120000;

	while (now_ms() < end) {
		struct pvz_reg r = { .offset = PVZ_REG_CORE_ID };

		readreg_waits++;
		if (!ioctl(fd, PVZ_IOC_READ_REG, &r) && r.hdr.status == PVZ_OK)
			return;
		usleep(100000);
	}
	printf("PVZINFO once the device did not answer READ_REG for 120 s\n");
}

/* Outcome unknown (transport error) or wrong: make the device hold nothing. */
static void resync(void)
{
	int tries;

	resyncs++;
	for (tries = 0; tries < 10; tries++) {
		int a, b = PVZ_OK, c;

		wait_answering();
		a = call(OP_UNMAP, true);
		if (host_heaps)
			b = call(OP_DESTROY_HEAPS, true);
		c = call(OP_DESTROY_CFG, true);
		if ((a == PVZ_OK || a == PVZ_NOT_FOUND) && (b == PVZ_OK || b == PVZ_NOT_FOUND) &&
		    (c == PVZ_OK || c == PVZ_NOT_FOUND))
			break;
		printf("PVZINFO once resync try %d: unmap %d, destroy heaps %d, destroy config %d\n", tries, a, b, c);
	}
	memset(&model, 0, sizeof(model));
	verify_config("resync");
}

/* One call judged against the model; false when the cycle must stop. */
static bool step(enum op op)
{
	int st = call(op, false);

	if (st != PVZ_OK) {
		resync();
		return false;
	}
	switch (op) {
	case OP_CREATE_CFG: model.cfg = true; break;
	case OP_CREATE_HEAPS:
		model.heaps = true;
		if (model.gpu_size && (arg.heaps.gpu_paddr != model.gpu_ipa || arg.heaps.gpu_size != model.gpu_size))
			printf("PVZINFO once host heaps moved: gpu %#llx+%#llx, before %#llx+%#llx\n",
			       arg.heaps.gpu_paddr, arg.heaps.gpu_size, model.gpu_ipa, model.gpu_size);
		model.gpu_ipa = arg.heaps.gpu_paddr;
		model.gpu_size = arg.heaps.gpu_size;
		break;
	case OP_MAP:
		model.fw = true;
		model.fw_ipa = arg.fw.ipa;
		model.fw_size = arg.fw.size;
		break;
	case OP_UNMAP: model.fw = false; break;
	case OP_DESTROY_HEAPS: model.heaps = false; break;
	case OP_DESTROY_CFG: model.cfg = false; break;
	default: break;
	}
	verify_config(op_name[op]);
	return true;
}

static bool make_all(void)
{
	return step(OP_CREATE_CFG) && (!host_heaps || step(OP_CREATE_HEAPS)) && step(OP_MAP);
}

static bool destroy_all(void)
{
	return step(OP_UNMAP) && (!host_heaps || step(OP_DESTROY_HEAPS)) && step(OP_DESTROY_CFG);
}

/* Answers to judged calls that are neither OK nor the two "ran twice" ones. */
static unsigned long long other_status(void)
{
	unsigned long long n = 0;
	int s;

	for (s = 1; s < NSTATUS; s++)
		if (s != PVZ_ALREADY_EXISTS && s != PVZ_NOT_FOUND)
			n += bad_status[s];
	return n;
}

static void print_counts(void)
{
	int o;

	for (o = 0; o < OP_N; o++)
		printf("PVZONCE op=%s calls=%llu ok=%llu already_exists=%llu not_found=%llu transport_errors=%llu\n",
		       op_name[o], count[o].calls, count[o].st[PVZ_OK], count[o].st[PVZ_ALREADY_EXISTS],
		       count[o].st[PVZ_NOT_FOUND], count[o].transport);
	printf("PVZONCE cycles=%llu calls=%llu ok=%llu already_exists=%llu not_found=%llu other_status=%llu "
	       "transport_errors=%llu etimedout=%llu eio=%llu eintr=%llu enodev=%llu eproto=%llu ebusy=%llu other_errno=%llu "
	       "resyncs=%llu resync_calls=%llu resync_read_regs=%llu slow_calls=%llu max_call_ms=%llu config_rechecks=%llu config_mismatches=%llu\n",
	       cycles, calls, ok_answers, bad_status[PVZ_ALREADY_EXISTS], bad_status[PVZ_NOT_FOUND],
	       other_status(), transport, err_timedout, err_io, err_intr, err_nodev, err_proto, err_busy, err_other,
	       resyncs, resync_calls, readreg_waits, slow_calls, max_call_ms, config_rechecks, config_mismatches);
}

int main(void)
{
	unsigned long long t0, next_progress;
	struct pvz_config c;
	bool stop = false;

	setvbuf(stdout, NULL, _IOLBF, 0);
	parse_cmdline();
	fd = open("/dev/pvz", O_RDWR);
	if (!check("once.open", fd >= 0, "/dev/pvz: %s", fd < 0 ? strerror(errno) : "ok"))
		goto out;
	memset(&c, 0, sizeof(c));
	if (ioctl(fd, PVZ_IOC_GET_CONFIG, &c))
		c.magic = 0;
	if (!check("once.config", c.magic == VIRTIO_PVZ_MAGIC, "magic=%#x osid=%u status=%#x features=%#llx",
		   c.magic, c.osid, c.status, c.features))
		goto out;
	host_heaps = c.features & (1ull << VIRTIO_PVZ_F_HOST_HEAPS);
	check("once.starts_empty", !(c.status & (PVZ_STATUS_DEV_CONFIG | PVZ_STATUS_FW_HEAP_MAPPED)),
	      "status=%#x", c.status);
	ctl_open();
	printf("PVZINFO once osid=%u host_heaps=%d loop_s=%u cycles=%u host_line=%s\n",
	       c.osid, host_heaps, loop_s, max_cycles, ctl >= 0 ? "ttyS1" : "none");
	printf("PVZREADY once\n");
	t0 = now_ms();
	next_progress = t0 + 10000;
	while (!stop) {
		/* A cycle that stopped early has resynced to "nothing held". */
		if (make_all())
			destroy_all();
		cycles++;
		if (now_ms() >= next_progress) {
			printf("PVZONCE progress t=%llus cycles=%llu calls=%llu wrong=%llu transport_errors=%llu\n",
			       (now_ms() - t0) / 1000, cycles, calls,
			       bad_status[PVZ_ALREADY_EXISTS] + bad_status[PVZ_NOT_FOUND], transport);
			next_progress += 10000;
		}
		if ((max_cycles && cycles >= max_cycles) || now_ms() - t0 >= loop_s * 1000ull)
			stop = true;
		else if (ctl >= 0) {
			const char *l = ctl_line(0);

			if (l && !strcmp(l, "stop"))
				stop = true;
		}
	}
	printf("PVZINFO once loop_s=%.1f cycles=%llu\n", (now_ms() - t0) / 1000.0, cycles);
	if (ctl >= 0) {
		/* What the host must find in the ledger: everything made. */
		bool held = make_all();

		check("once.hold.made", held, "device config, %s firmware heap", host_heaps ? "host heaps," : "");
		if (held && host_heaps)
			printf("PVZHEAP GPU_LOCAL ipa=%#llx size=%#llx\n", model.gpu_ipa, model.gpu_size);
		if (held)
			printf("PVZHEAP FW_LOCAL ipa=%#llx size=%#llx\n", model.fw_ipa, model.fw_size);
		printf("PVZONCE held dev_config=%d host_heaps=%d fw_heap=%d\n", model.cfg, model.heaps, model.fw);
		print_log();
		printf("PVZREADY once-hold\n");
		ctl_wait("go-hold");
		check("once.hold.destroyed", destroy_all(), "unmap, destroy heaps, destroy config");
		print_log();
		printf("PVZREADY once-empty\n");
		ctl_wait("go-empty");
	}
	print_log();
	check("once.calls_made", cycles > 0 && ok_answers > 0, "cycles=%llu ok_answers=%llu", cycles, ok_answers);
	check("once.no_already_exists", !bad_status[PVZ_ALREADY_EXISTS],
	      "%llu calls made once answered ALREADY_EXISTS (ran twice)", bad_status[PVZ_ALREADY_EXISTS]);
	check("once.no_not_found", !bad_status[PVZ_NOT_FOUND],
	      "%llu calls made once answered NOT_FOUND (ran twice, or what they undo never ran)",
	      bad_status[PVZ_NOT_FOUND]);
	check("once.no_other_status", !other_status(), "%llu answers neither OK nor ALREADY_EXISTS/NOT_FOUND",
	      other_status());
	/* Nothing here mmap()s the heap or claims the device: an EBUSY from
	 * UNMAP_FW_HEAP means the driver took a stale copy of config space
	 * (read while the daemon was away) for a mapping. */
	check("once.no_false_ebusy", !err_busy, "%llu EBUSY from UNMAP_FW_HEAP", err_busy);
	check("once.config_matches_answers", !config_mismatches,
	      "%llu times config space disagreed with the answers for 15 s (%llu re-reads)",
	      config_mismatches, config_rechecks);
	print_counts();
out:
	printf("%u passed, %u failed\n", passed, failed);
	return failed ? 1 : 0;
}
