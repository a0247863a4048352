// SPDX-License-Identifier: MIT
/*
 * pvz-test: the in-guest test of the virtio-pvz device through /dev/pvz.
 *
 * Expected values that depend on the daemon's set-up come from the kernel
 * command line, never from here:
 *   pvz.osid=N                 this guest's OSID
 *   pvz.carveout=IPA:SIZE      this guest's carve-out (regs bank + host heaps)
 *   pvz.mode=M[,M...]          full | steady | offline-watch | reconnect | hammer |
 *                              map-and-exit | hold-heaps | bench | migrate
 * "pvz-test claimed" (argument, not command line): only the checks of a
 * device an in-kernel client has claimed (scripts/vm-test ddk).
 *   pvz.bench=N                hypercalls timed by the benchmark (>= 10000)
 *   pvz.loop_s=S               duration bound of the loop modes (migrate also
 *                              ends when the host writes "stop" to ttyS1)
 * Output: one "PVZTEST <name> PASS|FAIL <detail>" line per check,
 * "PVZBENCH ..." lines, "PVZREADY <mode>" when a loop mode starts (the host
 * script waits for it), and a last line "N passed, N failed".
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>
#include "virtio_pvz_uapi.h"
#include "pvz_regs.h"

static int fd = -1;
static unsigned int passed, failed;
static struct {
	unsigned int osid;
	__u64 co_ipa, co_size;
	char mode[128];
	unsigned int bench;
	unsigned int loop_s;
} arg = { .mode = "full", .bench = 10000, .loop_s = 30 };

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

static int last_rc;

/* errno text only when the last ioctl failed: a PASS line shows "ok". */
static const char *errstr(void)
{
	return last_rc < 0 ? strerror(errno) : "ok";
}

static int xioctl(unsigned long cmd, void *a)
{
	last_rc = ioctl(fd, cmd, a);
	return last_rc;
}

static __u64 now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (__u64)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static const char *st_name(uint32_t s)
{
	static const char *const n[] = { "OK", "NOT_IMPLEMENTED", "INVALID_PARAMS",
		"OUT_OF_MEMORY", "INVALID_OSID", "ALREADY_EXISTS", "NOT_FOUND",
		"ADDRESS_OUT_OF_RANGE", "MALFORMED_REQUEST", "VM_OFFLINE", "INVALID_PVZ_CONFIG" };
	return s < sizeof(n) / sizeof(n[0]) ? n[s] : "?";
}

/* ---- kernel command line ---- */

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
		if (!strncmp(tok, "pvz.osid=", 9))
			arg.osid = strtoul(tok + 9, NULL, 0);
		else if (!strncmp(tok, "pvz.carveout=", 13)) {
			char *end;

			arg.co_ipa = strtoull(tok + 13, &end, 0);
			if (*end == ':')
				arg.co_size = strtoull(end + 1, NULL, 0);
		} else if (!strncmp(tok, "pvz.mode=", 9))
			snprintf(arg.mode, sizeof(arg.mode), "%s", tok + 9);
		else if (!strncmp(tok, "pvz.bench=", 10))
			arg.bench = strtoul(tok + 10, NULL, 0);
		else if (!strncmp(tok, "pvz.loop_s=", 11))
			arg.loop_s = strtoul(tok + 11, NULL, 0);
	}
}

/* ---- call helpers: return the PVZ status, or 100+errno on a transport error ---- */

#define XFAIL(e) (100 + (e))

static uint32_t do_ioctl(unsigned long cmd, void *a, struct pvz_call_hdr *h)
{
	if (ioctl(fd, cmd, a) < 0)
		return XFAIL(errno);
	return h->status;
}

static uint32_t read_reg(uint32_t off, uint32_t *val, uint32_t dev_id)
{
	struct pvz_reg r = { .hdr.dev_id = dev_id, .offset = off };
	uint32_t st = do_ioctl(PVZ_IOC_READ_REG, &r, &r.hdr);

	if (val)
		*val = r.value;
	return st;
}

static uint32_t write_reg(uint32_t off, uint32_t val)
{
	struct pvz_reg r = { .offset = off, .value = val };

	return do_ioctl(PVZ_IOC_WRITE_REG, &r, &r.hdr);
}

static uint32_t hdr_call(unsigned long cmd)
{
	struct pvz_call_hdr h = { 0 };

	return do_ioctl(cmd, &h, &h);
}

/* MAP_DEV_PHYS_HEAP with an address of the test's choosing: only through
 * RAW, and only when the module was loaded with debug_unsafe=1. */
static uint32_t raw_map_heap(__u64 paddr, __u64 size)
{
	struct pvz_raw r;
	uint32_t fn = PVZ_FN_MAP_DEV_PHYS_HEAP, st;

	memset(&r, 0, sizeof(r));
	r.req_len = 32;
	r.resp_len = 16;
	memcpy(r.req, &fn, 4);
	memcpy(r.req + 16, &size, 8);
	memcpy(r.req + 24, &paddr, 8);
	if (ioctl(fd, PVZ_IOC_RAW, &r) < 0)
		return XFAIL(errno);
	if (r.used_len < 16)
		return XFAIL(EPROTO);
	memcpy(&st, r.resp, 4);
	return st;
}

static bool debug_unsafe(void)
{
	char v[8] = "";
	FILE *f = fopen("/sys/module/virtio_pvz/parameters/debug_unsafe", "r");

	if (f) {
		if (!fgets(v, sizeof(v), f))
			v[0] = 0;
		fclose(f);
	}
	return v[0] == 'Y' || v[0] == '1';
}

static uint32_t map_fw_heap(struct pvz_fw_heap *h)
{
	memset(h, 0, sizeof(*h));
	return do_ioctl(PVZ_IOC_MAP_FW_HEAP, h, &h->hdr);
}

static uint32_t heap_origin(uint32_t heap, uint32_t *origin)
{
	struct pvz_heap_origin o = { .heap = heap };
	uint32_t st = do_ioctl(PVZ_IOC_GET_HEAP_ORIGIN, &o, &o.hdr);

	*origin = o.origin;
	return st;
}

static bool expect_st(const char *name, uint32_t got, uint32_t want)
{
	if (got >= 100)
		return check(name, false, "want=%s got=errno:%s", st_name(want), strerror(got - 100));
	return check(name, got == want, "want=%s got=%s", st_name(want), st_name(got));
}

static int get_config(struct pvz_config *c)
{
	return ioctl(fd, PVZ_IOC_GET_CONFIG, c);
}

/* ---- events ---- */

/* Collect events until `want` of them arrived or `ms` passed. */
static int read_events(struct pvz_event *ev, int max, int want, int ms)
{
	__u64 deadline = now_ns() + (__u64)ms * 1000000ull;
	int n = 0;

	while (n < max) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		__s64 left = (__s64)(deadline - now_ns()) / 1000000;
		ssize_t r;

		if (n >= want || left <= 0) {
			if (n >= want && left > 0)
				left = 0; /* drain what is already there */
			else if (left <= 0)
				break;
		}
		if (poll(&p, 1, (int)left) <= 0)
			break;
		r = read(fd, ev + n, (size_t)(max - n) * sizeof(*ev));
		if (r < 0)
			break;
		n += r / (ssize_t)sizeof(*ev);
	}
	return n;
}

static void drain_events(void)
{
	struct pvz_event ev[64];

	while (read_events(ev, 64, 0, 0) > 0)
		;
}

/* ---- sections ---- */

static struct pvz_config cfg0;

static void test_config(void)
{
	struct pvz_config c;
	int r = get_config(&c);

	if (!check("config.read", r == 0, "ioctl=%d errno=%s", r, r ? strerror(errno) : "0"))
		return;
	check("config.magic", c.magic == VIRTIO_PVZ_MAGIC, "got=%#x want=%#x", c.magic, VIRTIO_PVZ_MAGIC);
	check("config.version", c.version == VIRTIO_PVZ_VERSION, "got=%u", c.version);
	check("config.osid", arg.osid && c.osid == arg.osid, "got=%u cmdline=%u", c.osid, arg.osid);
	check("config.max_osids", c.osid < c.max_osids && c.max_osids <= 64, "max_osids=%u", c.max_osids);
	check("config.regs", c.regs_ipa == arg.co_ipa && c.regs_size == VIRTIO_PVZ_REGS_SIZE,
	      "regs_ipa=%#llx carveout_ipa=%#llx regs_size=%#x", c.regs_ipa, arg.co_ipa,
	      c.regs_size);
	check("config.online", c.status & PVZ_STATUS_ONLINE, "status=%#x", c.status);
	check("config.fw_heap_unmapped", !c.fw_heap_size && !c.fw_heap_ipa && !(c.status & PVZ_STATUS_FW_HEAP_MAPPED),
	      "fw_heap_ipa=%#llx fw_heap_size=%#llx status=%#x (nothing mapped yet)",
	      c.fw_heap_ipa, c.fw_heap_size, c.status);
	check("config.features", c.features & (1ull << 32), "features=%#llx (VERSION_1 needed)",
	      c.features);
	printf("PVZINFO osid=%u bvnc=%#llx irq=%u priority=%u status=%#x\n",
	       c.osid, c.bvnc, c.irq, c.priority, c.status);
	cfg0 = c;
}

static void test_dev_config(void)
{
	struct pvz_dev_config d = { .hdr.dev_id = 1 };
	struct pvz_config c;

	expect_st("bad.dev_id", do_ioctl(PVZ_IOC_CREATE_DEV_CONFIG, &d, &d.hdr), PVZ_INVALID_PARAMS);
	expect_st("destroy_dev_config.nothing", hdr_call(PVZ_IOC_DESTROY_DEV_CONFIG), PVZ_NOT_FOUND);
	memset(&d, 0, sizeof(d));
	if (expect_st("create_dev_config", do_ioctl(PVZ_IOC_CREATE_DEV_CONFIG, &d, &d.hdr), PVZ_OK))
		check("create_dev_config.values",
		      d.regs_pbase == arg.co_ipa && d.regs_size == VIRTIO_PVZ_REGS_SIZE && d.irq == cfg0.irq,
		      "irq=%u regs_pbase=%#llx regs_size=%#x", d.irq, d.regs_pbase, d.regs_size);
	memset(&d, 0, sizeof(d));
	expect_st("create_dev_config.twice", do_ioctl(PVZ_IOC_CREATE_DEV_CONFIG, &d, &d.hdr),
		  PVZ_ALREADY_EXISTS);
	if (!get_config(&c))
		check("config.status.dev_config", c.status & PVZ_STATUS_DEV_CONFIG, "status=%#x", c.status);
}

static uint32_t fw_origin = 99, gpu_origin = 99;
static __u64 fw_policy_size; /* from GET_DEV_PHYS_HEAP_ADDR_SIZE(FW_LOCAL) */

static bool in_carveout(__u64 a, __u64 s)
{
	return a >= arg.co_ipa + VIRTIO_PVZ_REGS_SIZE && a + s >= a && a + s <= arg.co_ipa + arg.co_size;
}

static void test_heaps(void)
{
	struct pvz_phys_heaps h = { 0 };
	struct pvz_heap_addr_size as = { 0 };
	uint32_t o, st;
	bool host_heaps = cfg0.features & (1ull << VIRTIO_PVZ_F_HOST_HEAPS);

	expect_st("get_heap_origin.gpu", heap_origin(PVZ_HEAP_GPU_LOCAL, &gpu_origin), PVZ_OK);
	expect_st("get_heap_origin.fw", heap_origin(PVZ_HEAP_FW_LOCAL, &fw_origin), PVZ_OK);
	printf("PVZINFO origin gpu_local=%s fw_local=%s\n", gpu_origin ? "GUEST" : "HOST",
	       fw_origin ? "GUEST" : "HOST");
	expect_st("bad.heap_id", heap_origin(99, &o), PVZ_INVALID_PARAMS);
	as.heap = PVZ_HEAP_FW_LOCAL;
	if (expect_st("get_heap_addr_size.fw", do_ioctl(PVZ_IOC_GET_HEAP_ADDR_SIZE, &as, &as.hdr), PVZ_OK)) {
		fw_policy_size = as.size;
		check("get_heap_addr_size.fw.value", as.size && !(as.size & 4095) &&
		      (fw_origin == PVZ_ORIGIN_HOST || as.addr == 0),
		      "addr=%#llx size=%#llx (guest origin, unmapped: 0/size)", as.addr, as.size);
	}

	expect_st("destroy_dev_phys_heaps.nothing", hdr_call(PVZ_IOC_DESTROY_DEV_PHYS_HEAPS), PVZ_NOT_FOUND);
	st = do_ioctl(PVZ_IOC_CREATE_DEV_PHYS_HEAPS, &h, &h.hdr);
	if (!host_heaps) {
		expect_st("create_dev_phys_heaps.no_host_heaps", st, PVZ_NOT_IMPLEMENTED);
		return;
	}
	if (expect_st("create_dev_phys_heaps", st, PVZ_OK)) {
		check("create_dev_phys_heaps.type", h.type == PVZ_HEAP_TYPE_UMA, "type=%u", h.type);
		if (gpu_origin == PVZ_ORIGIN_HOST)
			check("create_dev_phys_heaps.gpu_in_carveout", h.gpu_size && in_carveout(h.gpu_paddr, h.gpu_size),
			      "gpu=%#llx+%#llx carveout=%#llx+%#llx (after the 64 KiB bank)",
			      h.gpu_paddr, h.gpu_size, arg.co_ipa, arg.co_size);
		if (fw_origin == PVZ_ORIGIN_HOST)
			check("create_dev_phys_heaps.fw_in_carveout",
			      h.fw_size == fw_policy_size && in_carveout(h.fw_paddr, h.fw_size),
			      "fw=%#llx+%#llx", h.fw_paddr, h.fw_size);
		printf("PVZINFO heaps type=%u fw=%#llx+%#llx gpu=%#llx+%#llx\n",
		       h.type, h.fw_paddr, h.fw_size, h.gpu_paddr, h.gpu_size);
	}
	memset(&h, 0, sizeof(h));
	expect_st("create_dev_phys_heaps.twice", do_ioctl(PVZ_IOC_CREATE_DEV_PHYS_HEAPS, &h, &h.hdr),
		  PVZ_ALREADY_EXISTS);

	as.heap = PVZ_HEAP_GPU_LOCAL;
	if (expect_st("get_heap_addr_size.gpu", do_ioctl(PVZ_IOC_GET_HEAP_ADDR_SIZE, &as, &as.hdr), PVZ_OK))
		/* UMA: 0/0 per the reference header; a carve-out heap: inside it. */
		check("get_heap_addr_size.gpu.value",
		      (as.addr == 0 && as.size == 0) || in_carveout(as.addr, as.size),
		      "addr=%#llx size=%#llx", as.addr, as.size);
	memset(&as, 0, sizeof(as));
	as.heap = 42;
	expect_st("bad.heap_addr_size.heap_id", do_ioctl(PVZ_IOC_GET_HEAP_ADDR_SIZE, &as, &as.hdr),
		  PVZ_INVALID_PARAMS);
}

static void test_regs(void)
{
	uint32_t v = 0, w = 0;
	uint32_t *bank;

	if (expect_st("read_reg.core_id", read_reg(PVZ_REG_CORE_ID, &v, 0), PVZ_OK))
		check("read_reg.core_id.value", v == PVZ_CORE_ID_V1, "got=%#x want=%#x", v, PVZ_CORE_ID_V1);
	expect_st("write_reg.scratch", write_reg(PVZ_REG_SCRATCH, 0xA5A5F00Du), PVZ_OK);
	read_reg(PVZ_REG_SCRATCH, &v, 0);
	check("read_reg.scratch.value", v == 0xA5A5F00Du, "got=%#x", v);
	expect_st("bad.write_reg.read_only", write_reg(PVZ_REG_OSID, 5), PVZ_INVALID_PARAMS);
	expect_st("read_reg.osid", read_reg(PVZ_REG_OSID, &w, 0), PVZ_OK);
	check("read_reg.osid.value", w == cfg0.osid, "got=%u want=%u", w, cfg0.osid);
	expect_st("bad.reg_offset.outside", read_reg(VIRTIO_PVZ_REGS_SIZE, NULL, 0), PVZ_INVALID_PARAMS);
	expect_st("bad.reg_offset.unaligned", read_reg(2, NULL, 0), PVZ_INVALID_PARAMS);
	expect_st("bad.reg_offset.huge", read_reg(0xFFFFFFFCu, NULL, 0), PVZ_INVALID_PARAMS);
	expect_st("bad.write_reg.outside", write_reg(0x10000, 1), PVZ_INVALID_PARAMS);
	expect_st("bad.read_reg.dev_id", read_reg(PVZ_REG_CORE_ID, NULL, 7), PVZ_INVALID_PARAMS);
	expect_st("write_reg.irq_enable", write_reg(PVZ_REG_IRQ_ENABLE, PVZ_IRQ_STATUS_FW | PVZ_IRQ_STATUS_VMM),
		  PVZ_OK);
	expect_st("read_reg.irq_enable", read_reg(PVZ_REG_IRQ_ENABLE, &v, 0), PVZ_OK);
	check("read_reg.irq_enable.value", (v & 3) == 3, "got=%#x", v);

	/* The bank is a live mirror in the carve-out: it must agree with READ_REG. */
	bank = mmap(NULL, VIRTIO_PVZ_REGS_SIZE, PROT_READ, MAP_SHARED, fd, PVZ_MMAP_REGS);
	if (check("regs.mmap", bank != MAP_FAILED, "errno=%s", bank == MAP_FAILED ? strerror(errno) : "0")) {
		uint32_t m = __atomic_load_n(&bank[PVZ_REG_OSID / 4], __ATOMIC_ACQUIRE);

		check("regs.mirror.osid", m == cfg0.osid, "mirror=%u want=%u", m, cfg0.osid);
		munmap(bank, VIRTIO_PVZ_REGS_SIZE);
	}
}

static void test_raw(void)
{
	struct pvz_raw r;
	uint32_t st;

	memset(&r, 0, sizeof(r));
	r.req_len = 8; /* half a header */
	r.resp_len = 16 + 8;
	r.req[0] = PVZ_FN_READ_REG;
	if (check("bad.short_request.call", xioctl(PVZ_IOC_RAW, &r) == 0, "errno=%s", errstr())) {
		memcpy(&st, r.resp, 4);
		check("bad.short_request", r.used_len >= 16 && st == PVZ_MALFORMED_REQUEST,
		      "used_len=%u status=%s", r.used_len, st_name(st));
	}
	memset(&r, 0, sizeof(r));
	r.req_len = 16; /* READ_REG header without its offset */
	r.resp_len = 20;
	r.req[0] = PVZ_FN_READ_REG;
	r.req[12] = 0x5a;
	if (check("bad.truncated_input.call", xioctl(PVZ_IOC_RAW, &r) == 0, "errno=%s", errstr())) {
		uint32_t eid;

		memcpy(&st, r.resp, 4);
		memcpy(&eid, r.resp + 8, 4);
		/* the driver puts its own request id over the test's 0x5a */
		check("bad.truncated_input", r.used_len >= 16 && st == PVZ_MALFORMED_REQUEST && eid == r.request_id &&
		      r.request_id != 0x5a, "used_len=%u status=%s echoed_id=%#x request_id=%#x", r.used_len,
		      st_name(st), eid, r.request_id);
	}
	memset(&r, 0, sizeof(r));
	r.req_len = 16;
	r.resp_len = 16;
	r.req[0] = 99; /* unknown function */
	r.req[12] = 0x77;
	if (check("bad.unknown_function.call", xioctl(PVZ_IOC_RAW, &r) == 0, "errno=%s", errstr())) {
		uint32_t fn, eid;

		memcpy(&st, r.resp, 4);
		memcpy(&fn, r.resp + 4, 4);
		memcpy(&eid, r.resp + 8, 4);
		check("bad.unknown_function", r.used_len == 16 && st == PVZ_MALFORMED_REQUEST && fn == 99 &&
		      eid == r.request_id, "used_len=%u status=%s echoed_fn=%u echoed_id=%#x request_id=%#x",
		      r.used_len, st_name(st), fn, eid, r.request_id);
	}
	memset(&r, 0, sizeof(r));
	r.req_len = 20;
	r.resp_len = 8; /* smaller than the response header */
	r.req[0] = PVZ_FN_READ_REG;
	if (check("bad.tiny_response.call", xioctl(PVZ_IOC_RAW, &r) == 0, "errno=%s", errstr()))
		check("bad.tiny_response", r.used_len == 0, "used_len=%u want=0", r.used_len);
	memset(&r, 0, sizeof(r));
	r.req_len = 0;
	r.resp_len = 16;
	if (check("bad.empty_request.call", xioctl(PVZ_IOC_RAW, &r) == 0, "errno=%s", errstr())) {
		memcpy(&st, r.resp, 4);
		check("bad.empty_request", r.used_len == 16 && st == PVZ_MALFORMED_REQUEST,
		      "used_len=%u status=%s", r.used_len, st_name(st));
	}
	/* The device must still answer normally afterwards. */
	expect_st("after_bad.read_reg", read_reg(PVZ_REG_CORE_ID, NULL, 0), PVZ_OK);
}

/* ---- firmware heap and ring ---- */

static volatile uint8_t *heap;
static struct pvz_fw_heap fwh;
static __u64 next_seq = 1;
static uint32_t wr; /* write offset inside the command area */
static uint32_t ring_size = 4096;

#define RING32(off) ((volatile uint32_t *)(heap + (off)))
#define RING64(off) ((volatile __u64 *)(heap + (off)))

static void put_cmd(uint32_t op, __u64 a0, __u64 a1)
{
	struct pvz_cmd c = { .op = op, .seq = next_seq++, .arg0 = a0, .arg1 = a1 };

	memcpy((void *)(heap + PVZ_RING_HDR_SIZE + wr), &c, sizeof(c));
	wr = (wr + PVZ_CMD_SIZE) % ring_size;
}

static int kick(void)
{
	struct pvz_kick k = { .write_offset = wr };

	/* Commands before write_offset, both before the doorbell. */
	__atomic_store_n((uint32_t *)(heap + PVZ_RING_OFF_WRITE), wr, __ATOMIC_RELEASE);
	return xioctl(PVZ_IOC_KICK, &k);
}

/* Wait until the firmware's completed_seq reaches seq. */
static bool wait_seq(__u64 seq, int ms)
{
	__u64 deadline = now_ns() + (__u64)ms * 1000000ull;

	while (now_ns() < deadline) {
		if (__atomic_load_n((__u64 *)(heap + PVZ_RING_OFF_SEQ), __ATOMIC_ACQUIRE) >= seq)
			return true;
		usleep(200);
	}
	return false;
}

static int count_completion_events(struct pvz_event *ev, int n, __u64 *last)
{
	int i, k = 0;

	for (i = 0; i < n; i++)
		if (ev[i].type == PVZ_EVENT_FIRMWARE && ev[i].code == PVZ_FW_EVENT_KICK_DONE) {
			k++;
			*last = ev[i].value;
		}
	return k;
}

static void test_ring(void)
{
	struct pvz_event ev[64];
	__u64 last = 0, ts;
	uint32_t irq = 0, rd;
	int n, i, k;
	bool saw_irq = false, saw_fault = false;

	drain_events();
	memset((void *)heap, 0, PVZ_RING_HDR_SIZE + ring_size);
	*RING32(PVZ_RING_OFF_SIZE) = ring_size;
	*RING32(PVZ_RING_OFF_WRITE) = 0;
	__atomic_store_n((uint32_t *)(heap + PVZ_RING_OFF_MAGIC), PVZ_RING_MAGIC, __ATOMIC_RELEASE);

	/* kick 1: NOP, FENCE, TIMESTAMP */
	put_cmd(PVZ_OP_NOP, 0, 0);
	put_cmd(PVZ_OP_FENCE, 0x100000, 0xF00DF00D12345678ull);
	put_cmd(PVZ_OP_TIMESTAMP, 0x100008, 0);
	check("ring.kick1", kick() == 0, "errno=%s", errstr());
	check("ring.kick1.completed_seq", wait_seq(next_seq - 1, 5000), "completed_seq=%llu want=%llu",
	      *RING64(PVZ_RING_OFF_SEQ), next_seq - 1);
	check("ring.fence", *RING64(0x100000) == 0xF00DF00D12345678ull, "value=%#llx", *RING64(0x100000));
	ts = *RING64(0x100008);
	check("ring.timestamp", ts != 0, "ns=%llu", ts);
	rd = *RING32(PVZ_RING_OFF_READ);
	check("ring.read_offset", rd == wr, "read_offset=%u write_offset=%u", rd, wr);
	n = read_events(ev, 64, 1, 3000);
	n += read_events(ev + n, 64 - n, 64, 200); /* anything extra would show here */
	k = count_completion_events(ev, n, &last);
	check("ring.kick1.one_event", k == 1 && last == next_seq - 1, "events=%d completion=%d value=%llu", n, k, last);

	/* kick 2: IRQ op, then a FENCE */
	put_cmd(PVZ_OP_IRQ, 0xC0DE0001u, 0);
	put_cmd(PVZ_OP_FENCE, 0x100010, 2);
	put_cmd(PVZ_OP_TIMESTAMP, 0x100038, 0);
	check("ring.kick2", kick() == 0, "errno=%s", errstr());
	wait_seq(next_seq - 1, 5000);
	n = read_events(ev, 64, 2, 3000);
	n += read_events(ev + n, 64 - n, 64, 200);
	for (i = 0; i < n; i++)
		if (ev[i].type == PVZ_EVENT_FIRMWARE && ev[i].code == 0xC0DE0001u)
			saw_irq = true;
	k = count_completion_events(ev, n, &last);
	check("ring.irq_event", saw_irq, "events=%d", n);
	check("ring.kick2.one_event", k == 1 && last == next_seq - 1, "completion=%d value=%llu", k, last);
	check("ring.timestamp.monotonic", *RING64(0x100038) > ts, "first=%llu second=%llu", ts,
	      *RING64(0x100038));

	{
		uint32_t ro = 0, lo = 0, hi = 0;

		read_reg(PVZ_REG_FW_READ_OFFSET, &ro, 0);
		read_reg(PVZ_REG_FW_COMPLETED_SEQ_LO, &lo, 0);
		read_reg(PVZ_REG_FW_COMPLETED_SEQ_HI, &hi, 0);
		check("regs.fw_mirror", ro == wr && (((__u64)hi << 32) | lo) == next_seq - 1,
		      "FW_READ_OFFSET=%u want %u, completed_seq=%llu want %llu", ro, wr,
		      ((__u64)hi << 32) | lo, next_seq - 1);
	}
	/* IRQ_STATUS: bit0 set by firmware events, cleared by writing 1 */
	expect_st("irq_status.read", read_reg(PVZ_REG_IRQ_STATUS, &irq, 0), PVZ_OK);
	check("irq_status.fw_bit", irq & PVZ_IRQ_STATUS_FW, "irq_status=%#x", irq);
	expect_st("irq_status.w1c", write_reg(PVZ_REG_IRQ_STATUS, PVZ_IRQ_STATUS_FW), PVZ_OK);
	read_reg(PVZ_REG_IRQ_STATUS, &irq, 0);
	check("irq_status.cleared", !(irq & PVZ_IRQ_STATUS_FW), "irq_status=%#x", irq);

	/* a burst of three kicks, one FENCE each: three completion events */
	for (i = 0; i < 3; i++) {
		put_cmd(PVZ_OP_FENCE, 0x100018 + 8 * i, 100 + i);
		if (kick())
			break;
	}
	check("ring.burst.kicks", i == 3, "posted=%d %s", i, errstr());
	wait_seq(next_seq - 1, 5000);
	n = read_events(ev, 64, 3, 3000);
	n += read_events(ev + n, 64 - n, 64, 200);
	k = count_completion_events(ev, n, &last);
	check("ring.burst.one_event_per_kick", k == 3 && last == next_seq - 1,
	      "completion_events=%d last=%llu want 3, %llu", k, last, next_seq - 1);
	check("ring.burst.fences", *RING64(0x100018) == 100 && *RING64(0x100020) == 101 && *RING64(0x100028) == 102,
	      "%llu %llu %llu", *RING64(0x100018), *RING64(0x100020), *RING64(0x100028));

	/* a FENCE outside the heap fails only itself */
	put_cmd(PVZ_OP_FENCE, fwh.size, 0xBAD);
	put_cmd(PVZ_OP_FENCE, 0x100030, 7);
	check("ring.fault.kick", kick() == 0, "errno=%s", errstr());
	wait_seq(next_seq - 1, 5000);
	n = read_events(ev, 64, 2, 3000);
	for (i = 0; i < n; i++)
		if (ev[i].type == PVZ_EVENT_FIRMWARE && ev[i].code == PVZ_FW_FAULT_CODE)
			saw_fault = true;
	check("ring.fault.event", saw_fault, "events=%d want code %#x", n, PVZ_FW_FAULT_CODE);
	check("ring.fault.next_cmd_ran", *RING64(0x100030) == 7, "value=%llu", *RING64(0x100030));
	rd = *RING32(PVZ_RING_OFF_READ);
	check("ring.fault.read_offset", rd == wr, "read_offset=%u write_offset=%u", rd, wr);
	write_reg(PVZ_REG_IRQ_STATUS, PVZ_IRQ_STATUS_FW | PVZ_IRQ_STATUS_VMM);
}

static void test_fw_heap(void)
{
	struct pvz_config c;
	struct pvz_fw_heap again;
	uint32_t st;

	if (fw_origin != PVZ_ORIGIN_GUEST) {
		expect_st("map_fw_heap.host_origin", map_fw_heap(&fwh), PVZ_INVALID_PVZ_CONFIG);
		fwh.ipa = 0;
		printf("PVZTEST ring SKIP firmware heap origin is HOST\n");
		return;
	}
	if (debug_unsafe()) {
		/* The daemon's own checks of a user-named address (RAW, debug only). */
		expect_st("bad.map.wrong_size", raw_map_heap(0x2000000, fw_policy_size - 4096), PVZ_INVALID_PARAMS);
		expect_st("bad.map.zero_addr", raw_map_heap(0, fw_policy_size), PVZ_INVALID_PARAMS);
		expect_st("bad.map.unaligned", raw_map_heap(0x2000008, fw_policy_size), PVZ_INVALID_PARAMS);
		expect_st("bad.map.carveout_overlap", raw_map_heap(arg.co_ipa, fw_policy_size), PVZ_ADDRESS_OUT_OF_RANGE);
		expect_st("bad.map.ipa_out_of_range", raw_map_heap(0x7F0000000000ull, fw_policy_size),
			  PVZ_ADDRESS_OUT_OF_RANGE);
	} else {
		check("raw.map_refused", raw_map_heap(0x2000000, fw_policy_size) == XFAIL(EPERM),
		      "MAP_DEV_PHYS_HEAP through RAW must be EPERM without debug_unsafe");
	}
	expect_st("unmap.nothing", hdr_call(PVZ_IOC_UNMAP_FW_HEAP), PVZ_NOT_FOUND);
	st = map_fw_heap(&fwh);
	if (!expect_st("map_fw_heap", st, PVZ_OK)) {
		fwh.ipa = 0;
		return;
	}
	check("fw_heap.placement", fwh.size == fw_policy_size && !(fwh.ipa & 4095) &&
	      (fwh.ipa + fwh.size <= arg.co_ipa || fwh.ipa >= arg.co_ipa + arg.co_size),
	      "ipa=%#llx size=%#llx outside carve-out %#llx+%#llx",
	      fwh.ipa, fwh.size, arg.co_ipa, arg.co_size);
	xioctl(PVZ_IOC_MAP_FW_HEAP, &again);
	check("map_fw_heap.twice", last_rc < 0 && errno == EEXIST, "errno=%s (want EEXIST)", errstr());
	if (!get_config(&c))
		check("config.fw_heap_mapped", c.fw_heap_ipa == fwh.ipa && c.fw_heap_size == fwh.size &&
		      (c.status & PVZ_STATUS_FW_HEAP_MAPPED),
		      "fw_heap_ipa=%#llx fw_heap_size=%#llx status=%#x", c.fw_heap_ipa, c.fw_heap_size, c.status);
	{
		struct pvz_heap_addr_size as = { .heap = PVZ_HEAP_FW_LOCAL };

		if (expect_st("get_heap_addr_size.fw.mapped", do_ioctl(PVZ_IOC_GET_HEAP_ADDR_SIZE, &as, &as.hdr), PVZ_OK))
			check("get_heap_addr_size.fw.mapped.value", as.addr == fwh.ipa && as.size == fwh.size,
			      "addr=%#llx size=%#llx", as.addr, as.size);
	}

	heap = mmap(NULL, fwh.size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, PVZ_MMAP_FW_HEAP);
	if (check("fw_heap.mmap", heap != MAP_FAILED, "errno=%s", heap == MAP_FAILED ? strerror(errno) : "0")) {
		check("fw_heap.unmap_refused_while_mmapped",
		      ioctl(fd, PVZ_IOC_UNMAP_FW_HEAP, &again.hdr) < 0 && errno == EBUSY,
		      "errno=%s (want EBUSY)", strerror(errno));
		test_ring();
	}
}

static void test_teardown(void)
{
	struct pvz_config c;

	if (heap && heap != MAP_FAILED) {
		munmap((void *)heap, fwh.size);
		heap = NULL;
	}
	if (fwh.ipa) {
		expect_st("unmap_fw_heap", hdr_call(PVZ_IOC_UNMAP_FW_HEAP), PVZ_OK);
		expect_st("unmap_fw_heap.twice", hdr_call(PVZ_IOC_UNMAP_FW_HEAP), PVZ_NOT_FOUND);
		if (!get_config(&c))
			check("config.fw_heap_unmapped", !c.fw_heap_ipa && !(c.status & PVZ_STATUS_FW_HEAP_MAPPED),
			      "fw_heap_ipa=%#llx status=%#x", c.fw_heap_ipa, c.status);
		fwh.ipa = 0;
	}
	if (cfg0.features & (1ull << VIRTIO_PVZ_F_HOST_HEAPS)) {
		expect_st("destroy_dev_phys_heaps", hdr_call(PVZ_IOC_DESTROY_DEV_PHYS_HEAPS), PVZ_OK);
		expect_st("destroy_dev_phys_heaps.twice", hdr_call(PVZ_IOC_DESTROY_DEV_PHYS_HEAPS), PVZ_NOT_FOUND);
	}
	expect_st("destroy_dev_config", hdr_call(PVZ_IOC_DESTROY_DEV_CONFIG), PVZ_OK);
	expect_st("destroy_dev_config.twice", hdr_call(PVZ_IOC_DESTROY_DEV_CONFIG), PVZ_NOT_FOUND);
}

static int cmp_u64(const void *a, const void *b)
{
	__u64 x = *(const __u64 *)a, y = *(const __u64 *)b;

	return x < y ? -1 : x > y;
}

static void bench(void)
{
	unsigned int n = arg.bench < 10000 ? 10000 : arg.bench, i, bad = 0;
	__u64 *lat = calloc(n, sizeof(*lat)), t0, t1;

	if (!lat)
		return;
	t0 = now_ns();
	for (i = 0; i < n; i++) {
		__u64 a = now_ns();

		if (read_reg(PVZ_REG_CORE_ID, NULL, 0) != PVZ_OK)
			bad++;
		lat[i] = now_ns() - a;
	}
	t1 = now_ns();
	qsort(lat, n, sizeof(*lat), cmp_u64);
	printf("PVZBENCH hypercall calls=%u p50_us=%.1f p99_us=%.1f max_us=%.1f calls_per_s=%.0f\n", n,
	       lat[n / 2] / 1e3, lat[(__u64)n * 99 / 100] / 1e3, lat[n - 1] / 1e3,
	       n / ((t1 - t0) / 1e9));
	check("bench.all_ok", bad == 0, "failed_calls=%u of %u", bad, n);
	free(lat);
}

static void test_driver_counters(void)
{
	struct pvz_config c;

	if (get_config(&c))
		return;
	check("driver.no_protocol_errors", c.call_protocol_errors == 0 && c.events_malformed == 0 &&
	      c.config_errors == 0, "protocol_errors=%llu malformed_events=%llu config_errors=%u",
	      c.call_protocol_errors, c.events_malformed, c.config_errors);
	check("driver.no_timeouts", c.call_timeouts == 0, "timeouts=%llu", c.call_timeouts);
	check("driver.kicks_returned", c.kicks_completed == c.kicks_posted, "posted=%llu returned=%llu",
	      c.kicks_posted, c.kicks_completed);
	printf("PVZINFO calls=%llu events=%llu dropped=%llu config_changes=%u\n",
	       c.calls, c.events_received, c.events_dropped, c.config_changes);
}

/* ---- loop modes, driven by the host script ---- */

/* Calls keep succeeding for loop_s seconds (the other guest is being
 * offlined or killed meanwhile). */
static void mode_steady(void)
{
	__u64 end, calls = 0, bad = 0, worst = 0, foreign = 0;
	struct pvz_event ev[16];
	uint32_t st = 0;
	int n, i;

	drain_events();
	printf("PVZREADY steady\n");
	fflush(stdout);
	end = now_ns() + (__u64)arg.loop_s * 1000000000ull;
	while (now_ns() < end) {
		__u64 a = now_ns(), d;

		st = read_reg(PVZ_REG_CORE_ID, NULL, 0);
		d = now_ns() - a;
		if (d > worst)
			worst = d;
		calls++;
		if (st != PVZ_OK)
			bad++;
		/* This guest neither kicks nor is offlined: any event now belongs
		 * to another OSID (the one being offlined or killed). */
		n = read_events(ev, 16, 0, 0);
		for (i = 0; i < n; i++, foreign++)
			printf("PVZINFO unexpected event type=%u code=%#x value=%llu\n", ev[i].type, ev[i].code,
			       ev[i].value);
		usleep(1000);
	}
	check("steady.no_foreign_events", foreign == 0, "events=%llu", foreign);
	check("steady.calls_ok", calls > 0 && bad == 0, "calls=%llu failed=%llu last=%u worst_us=%.0f",
	      calls, bad, st, worst / 1e3);
}

/* This guest is offlined by the host: calls turn VM_OFFLINE, a VM-manager
 * event arrives. */
static void mode_offline_watch(void)
{
	__u64 end = now_ns() + (__u64)arg.loop_s * 1000000000ull;
	bool offline = false, vmm_event = false;
	struct pvz_event ev[16];
	struct pvz_config c;
	uint32_t st;
	int n, i;

	drain_events();
	printf("PVZREADY offline-watch\n");
	fflush(stdout);
	while (now_ns() < end && !(offline && vmm_event)) {
		st = read_reg(PVZ_REG_CORE_ID, NULL, 0);
		if (st == PVZ_VM_OFFLINE)
			offline = true;
		n = read_events(ev, 16, 1, 50);
		for (i = 0; i < n; i++)
			if (ev[i].type == PVZ_EVENT_VMM)
				vmm_event = true;
	}
	check("offline.status", offline, "VM_OFFLINE seen=%d", offline);
	check("offline.vmm_event", vmm_event, "type-2 event seen=%d", vmm_event);
	if (!get_config(&c))
		check("offline.config", !(c.status & PVZ_STATUS_ONLINE) && !c.fw_heap_ipa,
		      "status=%#x fw_heap_ipa=%#llx", c.status, c.fw_heap_ipa);
}

/* The daemon is killed and restarted by the host: a gap (failed or slow
 * calls) then calls answered again. */
static void mode_reconnect(void)
{
	__u64 end = now_ns() + (__u64)arg.loop_s * 1000000000ull, gap_ns = 0;
	unsigned int ok_after = 0, errors = 0;
	bool gap = false;
	struct pvz_config c;

	printf("PVZREADY reconnect\n");
	fflush(stdout);
	while (now_ns() < end && !(gap && ok_after >= 20)) {
		__u64 a = now_ns(), d;
		uint32_t st = read_reg(PVZ_REG_CORE_ID, NULL, 0);

		d = now_ns() - a;
		if (st != PVZ_OK || d > 500000000ull) {
			if (!gap)
				printf("PVZINFO reconnect gap begins: status=%u call_ms=%.0f\n", st, d / 1e6);
			gap = true;
			gap_ns += d;
			ok_after = 0;
			if (st != PVZ_OK)
				errors++;
			if (st >= 100)
				usleep(100000);
		} else if (gap) {
			ok_after++;
		}
		usleep(10000);
	}
	check("reconnect.gap_seen", gap, "gap_ms=%.0f failed_calls=%u", gap_ns / 1e6, errors);
	check("reconnect.answered_again", ok_after >= 20, "ok_calls_after_gap=%u", ok_after);
	if (!get_config(&c))
		check("reconnect.config", c.magic == VIRTIO_PVZ_MAGIC && c.osid == arg.osid,
		      "magic=%#x osid=%u", c.magic, c.osid);
}

/* Leaves a firmware heap mapped on exit: the driver's remove() (rmmod in
 * /init) must UNMAP it before handing the pages back; the host checks the
 * daemon's ledger afterwards. */
static void mode_map_and_exit(void)
{
	expect_st("leave_mapped.map", map_fw_heap(&fwh), PVZ_OK);
	printf("PVZINFO leave_mapped fw_heap ipa=%#llx size=%#llx\n", fwh.ipa, fwh.size);
	fwh.ipa = 0;
}

/* What one boot leaves in the device for the host to find in the ledger
 * (the reboot scenario): device config, host heaps if offered, the
 * firmware heap. */
static void mode_hold_heaps(void)
{
	struct pvz_dev_config d = { 0 };
	struct pvz_phys_heaps h = { 0 };

	expect_st("hold.create_dev_config", do_ioctl(PVZ_IOC_CREATE_DEV_CONFIG, &d, &d.hdr), PVZ_OK);
	if (cfg0.features & (1ull << VIRTIO_PVZ_F_HOST_HEAPS)) {
		if (expect_st("hold.create_dev_phys_heaps", do_ioctl(PVZ_IOC_CREATE_DEV_PHYS_HEAPS, &h, &h.hdr), PVZ_OK))
			printf("PVZHEAP GPU_LOCAL ipa=%#llx size=%#llx\n", h.gpu_paddr, h.gpu_size);
	}
	if (expect_st("hold.map_fw_heap", map_fw_heap(&fwh), PVZ_OK))
		printf("PVZHEAP FW_LOCAL ipa=%#llx size=%#llx\n", fwh.ipa, fwh.size);
	fwh.ipa = 0;
}

/* An in-kernel client (the DDK self-test) has claimed the device and mapped
 * its firmware heap: everything that changes the device is EBUSY, reading
 * is not. */
static void mode_claimed(void)
{
	struct pvz_dev_config d = { 0 };
	struct pvz_phys_heaps h = { 0 };
	struct pvz_call_hdr u = { 0 };
	struct pvz_fw_heap f = { 0 };
	struct pvz_reg w = { .offset = PVZ_REG_SCRATCH, .value = 1 };
	struct pvz_kick k = { 0 };
	struct pvz_config c;
	uint32_t v = 0, st;
	int r;

#define BUSY(name, cmd, a) do { \
		bool busy = xioctl(cmd, a) < 0 && errno == EBUSY; \
		check(name, busy, "errno=%s (want EBUSY)", errstr()); \
	} while (0)
	BUSY("claimed.create_dev_config_busy", PVZ_IOC_CREATE_DEV_CONFIG, &d);
	BUSY("claimed.destroy_dev_config_busy", PVZ_IOC_DESTROY_DEV_CONFIG, &u);
	BUSY("claimed.create_dev_phys_heaps_busy", PVZ_IOC_CREATE_DEV_PHYS_HEAPS, &h);
	BUSY("claimed.map_fw_heap_busy", PVZ_IOC_MAP_FW_HEAP, &f);
	BUSY("claimed.unmap_fw_heap_busy", PVZ_IOC_UNMAP_FW_HEAP, &u);
	BUSY("claimed.write_reg_busy", PVZ_IOC_WRITE_REG, &w);
	BUSY("claimed.kick_busy", PVZ_IOC_KICK, &k);
#undef BUSY
	st = read_reg(PVZ_REG_CORE_ID, &v, 0);
	check("claimed.read_reg_allowed", st == PVZ_OK && v == PVZ_CORE_ID_V1, "status %s core id %#x", st_name(st), v);
	memset(&c, 0, sizeof(c));
	r = get_config(&c);
	check("claimed.get_config_allowed", r == 0 && (c.status & PVZ_STATUS_FW_HEAP_MAPPED),
	      "ioctl %d status %#x fw_heap %#llx+%#llx (the client's heap)", r, c.status, c.fw_heap_ipa, c.fw_heap_size);
}

/* Calls until killed (the host SIGKILLs this guest's QEMU mid-call). */
static void mode_hammer(void)
{
	struct pvz_dev_config d = { 0 };

	do_ioctl(PVZ_IOC_CREATE_DEV_CONFIG, &d, &d.hdr);
	printf("PVZINFO hammer map=%s\n", st_name(map_fw_heap(&fwh)));
	printf("PVZREADY hammer\n");
	fflush(stdout);
	for (;;)
		read_reg(PVZ_REG_CORE_ID, NULL, 0);
}

/* ---- migrate: calls and firmware kicks while the host migrates the VM ---- */

/*
 * What the guest counts, and what the host checks at the end: every call
 * answered OK, every kick's commands run exactly once (completed_seq and
 * the fence carry on, TIMESTAMP only grows), every kick's two events (its
 * IRQ command's, then KICK_DONE) arriving once and in order, and the
 * device's own counters (they migrate with the register bank) agreeing.
 */
static struct {
	__u64 calls, calls_failed, scratch_bad;
	__u64 kicks, kick_errors, seq_timeouts, seq_wrong, fence_bad;
	__u64 ts_last, ts_backwards;
	__u64 ev_irq, ev_done, ev_lost, ev_doubled, ev_faults, ev_other;
	__u64 want_irq, want_done;	/* seq of the next event of each kind */
	__u64 worst_call_ns, worst_kick_ns;
} mig;

#define MIG_FENCE      0x100040
#define MIG_TIMESTAMP  0x100048
#define MIG_IRQ_BASE   0xC0DE0000u

static void mig_call(uint32_t st)
{
	mig.calls++;
	if (st != PVZ_OK)
		mig.calls_failed++;
}

/* One event against what the kicks so far must have caused. */
static void mig_event(const struct pvz_event *e)
{
	__u64 *want, *got;

	if (e->type == PVZ_EVENT_FIRMWARE && e->code == PVZ_FW_EVENT_KICK_DONE) {
		want = &mig.want_done;
		got = &mig.ev_done;
	} else if (e->type == PVZ_EVENT_FIRMWARE && (e->code & 0xFFFF0000u) == MIG_IRQ_BASE) {
		want = &mig.want_irq;
		got = &mig.ev_irq;
	} else {
		if (e->type == PVZ_EVENT_FIRMWARE && e->code == PVZ_FW_FAULT_CODE)
			mig.ev_faults++;
		else
			mig.ev_other++;
		printf("PVZINFO migrate unexpected event type=%u code=%#x value=%#llx\n", e->type, e->code,
		       e->value);
		return;
	}
	/* seq values of one kind grow by 3 per kick (IRQ, FENCE, TIMESTAMP) */
	if (e->value == *want) {
		(*got)++;
		*want += 3;
	} else if (e->value < *want) {
		mig.ev_doubled++;
		printf("PVZINFO migrate event again code=%#x value=%llu (next expected %llu)\n", e->code,
		       e->value, *want);
	} else {
		mig.ev_lost += (e->value - *want) / 3;
		printf("PVZINFO migrate events lost code=%#x value=%llu (expected %llu)\n", e->code,
		       e->value, *want);
		(*got)++;
		*want = e->value + 3;
	}
}

static void mig_events(int want, int ms)
{
	struct pvz_event ev[32];
	int n, i;

	n = read_events(ev, 32, want, ms);
	for (i = 0; i < n; i++)
		mig_event(&ev[i]);
}

/* One kick: IRQ, FENCE(kick number), TIMESTAMP; then its completion. */
static void mig_kick(void)
{
	__u64 first = next_seq, kickno = mig.kicks + 1, ts, a = now_ns(), d;

	put_cmd(PVZ_OP_IRQ, MIG_IRQ_BASE | (kickno & 0xFFFF), 0);
	put_cmd(PVZ_OP_FENCE, MIG_FENCE, kickno);
	put_cmd(PVZ_OP_TIMESTAMP, MIG_TIMESTAMP, 0);
	if (kick()) {
		mig.kick_errors++;
		printf("PVZINFO migrate kick %llu failed: %s\n", kickno, errstr());
		next_seq = first;
		wr = (wr + ring_size - 3 * PVZ_CMD_SIZE) % ring_size;
		return;
	}
	mig.kicks++;
	if (!wait_seq(next_seq - 1, 10000)) {
		mig.seq_timeouts++;
		printf("PVZINFO migrate kick %llu: completed_seq %llu, want %llu after 10 s\n", kickno,
		       *RING64(PVZ_RING_OFF_SEQ), next_seq - 1);
	} else if (*RING64(PVZ_RING_OFF_SEQ) != next_seq - 1) {
		mig.seq_wrong++;
	}
	d = now_ns() - a;
	if (d > mig.worst_kick_ns)
		mig.worst_kick_ns = d;
	if (*RING64(MIG_FENCE) != kickno)
		mig.fence_bad++;
	ts = *RING64(MIG_TIMESTAMP);
	if (ts <= mig.ts_last) {
		mig.ts_backwards++;
		printf("PVZINFO migrate TIMESTAMP went from %llu to %llu at kick %llu\n", mig.ts_last, ts, kickno);
	}
	mig.ts_last = ts;
	/* both events of this kick, and anything a bug would add */
	mig_events(2, 3000);
}

/* A line from the host on ttyS1 (opened once, non-blocking). */
static bool mig_stop_requested(int tty)
{
	static char line[64];
	static size_t len;
	char c;

	while (tty >= 0 && read(tty, &c, 1) == 1) {
		if (c == '\r')
			continue;
		if (c != '\n') {
			if (len < sizeof(line) - 1)
				line[len++] = c;
			continue;
		}
		line[len] = 0;
		len = 0;
		printf("PVZGOT %s\n", line);
		if (!strcmp(line, "stop"))
			return true;
	}
	return false;
}

static uint32_t reg(uint32_t off)
{
	uint32_t v = 0;

	mig_call(read_reg(off, &v, 0));
	return v;
}

static void mode_migrate(void)
{
	struct pvz_dev_config d = { 0 };
	__u64 end = now_ns() + (__u64)arg.loop_s * 1000000000ull, t0 = now_ns(), next_report = 0;
	uint32_t calls0, kicks0, cmds0, calls1, kicks1, cmds1, faults0, faults1;
	__u64 calls_at0, calls_at1;
	bool stopped = false;
	struct termios tio;
	int tty;

	do_ioctl(PVZ_IOC_CREATE_DEV_CONFIG, &d, &d.hdr);
	if (!expect_st("migrate.map_fw_heap", map_fw_heap(&fwh), PVZ_OK))
		return;
	heap = mmap(NULL, fwh.size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, PVZ_MMAP_FW_HEAP);
	if (!check("migrate.fw_heap.mmap", heap != MAP_FAILED, "errno=%s", heap == MAP_FAILED ? strerror(errno) : "0")) {
		heap = NULL;
		return;
	}
	memset((void *)heap, 0, PVZ_RING_HDR_SIZE + ring_size);
	*RING32(PVZ_RING_OFF_SIZE) = ring_size;
	*RING32(PVZ_RING_OFF_WRITE) = 0;
	__atomic_store_n((uint32_t *)(heap + PVZ_RING_OFF_MAGIC), PVZ_RING_MAGIC, __ATOMIC_RELEASE);
	write_reg(PVZ_REG_IRQ_ENABLE, PVZ_IRQ_STATUS_FW | PVZ_IRQ_STATUS_VMM);
	drain_events();
	mig.want_irq = next_seq;
	mig.want_done = next_seq + 2;

	/* raw, so a line arrives without the tty echoing or editing it */
	tty = open("/dev/ttyS1", O_RDONLY | O_NONBLOCK | O_NOCTTY);
	if (tty >= 0 && !tcgetattr(tty, &tio)) {
		cfmakeraw(&tio);
		tcsetattr(tty, TCSANOW, &tio);
	}
	/* the counters first: they must move by exactly what this loop does */
	calls_at0 = mig.calls;
	calls0 = reg(PVZ_REG_CNT_CALLS);
	kicks0 = reg(PVZ_REG_CNT_KICKS);
	cmds0 = reg(PVZ_REG_CNT_COMMANDS);
	faults0 = reg(PVZ_REG_CNT_FAULTS);
	printf("PVZREADY migrate tty=%s\n", tty >= 0 ? "ttyS1" : strerror(errno));
	fflush(stdout);
	while (now_ns() < end) {
		__u64 a = now_ns(), dt;
		uint32_t v = 0, i = (uint32_t)mig.calls;

		if (mig_stop_requested(tty)) {
			stopped = true;
			break;
		}
		mig_call(read_reg(PVZ_REG_CORE_ID, NULL, 0));
		mig_call(write_reg(PVZ_REG_SCRATCH, i));
		mig_call(read_reg(PVZ_REG_SCRATCH, &v, 0));
		if (v != i)
			mig.scratch_bad++;
		dt = (now_ns() - a) / 3;
		if (dt > mig.worst_call_ns)
			mig.worst_call_ns = dt;
		mig_kick();
		if (now_ns() >= next_report) {
			printf("PVZMIG progress t_s=%.1f calls=%llu failed=%llu kicks=%llu completed_seq=%llu "
			       "timestamp=%llu events=%llu\n", (now_ns() - t0) / 1e9, mig.calls, mig.calls_failed,
			       mig.kicks, *RING64(PVZ_RING_OFF_SEQ), mig.ts_last, mig.ev_irq + mig.ev_done);
			next_report = now_ns() + 1000000000ull;
		}
	}
	mig_events(0, 300); /* late or doubled events would show here */
	/* CNT_CALLS counts each call once: calls1 - calls0 is every call after calls0, calls1 included. */
	calls1 = reg(PVZ_REG_CNT_CALLS);
	calls_at1 = mig.calls;
	kicks1 = reg(PVZ_REG_CNT_KICKS);
	cmds1 = reg(PVZ_REG_CNT_COMMANDS);
	faults1 = reg(PVZ_REG_CNT_FAULTS);
	printf("PVZMIG summary stop=%s calls=%llu failed=%llu scratch_bad=%llu kicks=%llu kick_errors=%llu "
	       "seq_timeouts=%llu seq_wrong=%llu completed_seq=%llu fence_bad=%llu timestamp=%llu "
	       "ts_backwards=%llu ev_irq=%llu ev_done=%llu ev_lost=%llu ev_doubled=%llu ev_faults=%llu "
	       "ev_other=%llu worst_call_ms=%.1f worst_kick_ms=%.1f dev_calls=%u dev_kicks=%u dev_commands=%u "
	       "dev_faults=%u\n",
	       stopped ? "host" : "loop_s", mig.calls, mig.calls_failed, mig.scratch_bad, mig.kicks,
	       mig.kick_errors, mig.seq_timeouts, mig.seq_wrong, *RING64(PVZ_RING_OFF_SEQ), mig.fence_bad,
	       mig.ts_last, mig.ts_backwards, mig.ev_irq, mig.ev_done, mig.ev_lost, mig.ev_doubled,
	       mig.ev_faults, mig.ev_other, mig.worst_call_ns / 1e6, mig.worst_kick_ns / 1e6,
	       calls1 - calls0, kicks1 - kicks0, cmds1 - cmds0, faults1 - faults0);
	check("migrate.stopped_by_host", stopped, "the host's \"stop\" %s", stopped ? "arrived" : "never came");
	check("migrate.calls", mig.calls > 0 && !mig.calls_failed && !mig.scratch_bad,
	      "calls=%llu failed=%llu scratch_mismatches=%llu", mig.calls, mig.calls_failed, mig.scratch_bad);
	check("migrate.kicks", mig.kicks > 0 && !mig.kick_errors && !mig.seq_timeouts && !mig.seq_wrong,
	      "kicks=%llu errors=%llu completed_seq_timeouts=%llu completed_seq_wrong=%llu", mig.kicks,
	      mig.kick_errors, mig.seq_timeouts, mig.seq_wrong);
	check("migrate.completed_seq", *RING64(PVZ_RING_OFF_SEQ) == next_seq - 1 && *RING32(PVZ_RING_OFF_READ) == wr,
	      "completed_seq=%llu want %llu read_offset=%u want %u", *RING64(PVZ_RING_OFF_SEQ), next_seq - 1,
	      *RING32(PVZ_RING_OFF_READ), wr);
	check("migrate.fences", !mig.fence_bad, "wrong fence values=%llu", mig.fence_bad);
	check("migrate.timestamp_monotonic", !mig.ts_backwards && mig.ts_last, "backwards=%llu last=%llu",
	      mig.ts_backwards, mig.ts_last);
	check("migrate.events_exactly_once",
	      mig.ev_irq == mig.kicks && mig.ev_done == mig.kicks && !mig.ev_lost && !mig.ev_doubled &&
	      !mig.ev_faults && !mig.ev_other,
	      "kicks=%llu irq_events=%llu done_events=%llu lost=%llu doubled=%llu faults=%llu other=%llu",
	      mig.kicks, mig.ev_irq, mig.ev_done, mig.ev_lost, mig.ev_doubled, mig.ev_faults, mig.ev_other);
	check("migrate.device_counters",
	      calls1 - calls0 == calls_at1 - calls_at0 - 1 && kicks1 - kicks0 == mig.kicks &&
	      cmds1 - cmds0 == 3 * mig.kicks && faults1 == faults0,
	      "device calls=%u kicks=%u commands=%u faults=%u; guest calls=%llu kicks=%llu commands=%llu",
	      calls1 - calls0, kicks1 - kicks0, cmds1 - cmds0, faults1 - faults0, calls_at1 - calls_at0 - 1,
	      mig.kicks, 3 * mig.kicks);
	if (tty >= 0)
		close(tty);
	munmap((void *)heap, fwh.size);
	heap = NULL;
	expect_st("migrate.unmap_fw_heap", hdr_call(PVZ_IOC_UNMAP_FW_HEAP), PVZ_OK);
	fwh.ipa = 0;
	expect_st("migrate.destroy_dev_config", hdr_call(PVZ_IOC_DESTROY_DEV_CONFIG), PVZ_OK);
	test_driver_counters();
}

int main(int argc, char **argv)
{
	char *m, *save;
	__u64 t0 = now_ns();

	setvbuf(stdout, NULL, _IOLBF, 0);
	parse_cmdline();
	if (argc > 1 && !strcmp(argv[1], "claimed")) {
		fd = open("/dev/pvz", O_RDWR);
		if (check("open", fd >= 0, "/dev/pvz errno=%s", fd < 0 ? strerror(errno) : "0"))
			mode_claimed();
		goto out;
	}
	printf("PVZINFO cmdline osid=%u carveout=%#llx:%#llx mode=%s\n", arg.osid, arg.co_ipa,
	       arg.co_size, arg.mode);
	fd = open("/dev/pvz", O_RDWR);
	if (!check("open", fd >= 0, "/dev/pvz errno=%s", fd < 0 ? strerror(errno) : "0"))
		goto out;
	check("cmdline", arg.osid && arg.co_size, "pvz.osid and pvz.carveout=IPA:SIZE are needed");
	test_config();
	for (m = strtok_r(arg.mode, ",", &save); m; m = strtok_r(NULL, ",", &save)) {
		if (!strcmp(m, "full")) {
			test_dev_config();
			test_heaps();
			test_regs();
			test_raw();
			test_fw_heap();
			bench();
			test_teardown();
			test_driver_counters();
		} else if (!strcmp(m, "steady")) {
			mode_steady();
		} else if (!strcmp(m, "offline-watch")) {
			mode_offline_watch();
		} else if (!strcmp(m, "reconnect")) {
			mode_reconnect();
		} else if (!strcmp(m, "map-and-exit")) {
			mode_map_and_exit();
		} else if (!strcmp(m, "hold-heaps")) {
			mode_hold_heaps();
		} else if (!strcmp(m, "hammer")) {
			mode_hammer();
		} else if (!strcmp(m, "migrate")) {
			mode_migrate();
		} else if (!strcmp(m, "bench")) {
			bench();
		} else {
			check("mode", false, "unknown mode '%s'", m);
		}
	}
out:
	printf("PVZINFO test_s=%.2f\n", (now_ns() - t0) / 1e9);
	printf("%u passed, %u failed\n", passed, failed);
	return failed ? 1 : 0;
}
