// SPDX-License-Identifier: GPL-2.0
/*
 * pvz_ddk_selftest: plays a DDK guest driver's PVZ init (module load) and
 * teardown (module unload) through the connection table of
 * vmm_type_virtio.c, in the order the DDK of PVZ_TEST_DDK makes its calls
 * (docs/ddk-integration.md, "Call sequence"), against a real virtio-pvz
 * device. The firmware, the rest of the DDK and a DDK host are not here: the
 * host side is the vhost-user-pvz daemon; the DDK's PvzServer* entries (which
 * a guest never calls) answer NOT_SUPPORTED.
 *
 * Output (kernel log; scripts/vm-test and scripts/aarch64-dt-boot read it):
 *   PVZDDK <abi>.<round> <check> PASS|FAIL <detail>
 *   PVZHEAP <name> ipa=0x.. size=0x..       what the host's ledger must hold
 *   PVZDDK <abi>.<round> up: N passed, N failed      (end of module init)
 *   PVZDDK <abi>.<round> down: N passed, N failed    (end of module exit)
 * A DDK call's check is named after the DDK's table entry, e.g.
 * "VMMCreatePvzConnection" or "sHostFuncTab.pfnMapDevPhysHeap".
 *
 * Parameters: mode=guest (default) | host (1.10: the driver in host mode,
 * no device) | nodev (the VMM type's device is absent: load with
 * vmm_virtio_device=N vmm_virtio_wait_ms=M); round=N (printed);
 * expect_removed=1 (writable; set before unloading when the device was
 * unbound meanwhile: every call must then answer INVALID_DEVICE);
 * host_abi=1.10 (default) | 1.13 | 1.15 | 1.18 | 23: the daemon's --ddk-abi,
 * which decides what the host answers. A 1.10 module under another host is
 * refused at its first 1.10-only call (the DDK's device creation fails
 * there: "PVZDDK <abi>.<round> refused by the <host> host at <call>"); a
 * 1.13+ module also checks what that host does with calls and ids that are
 * not its DDK's (only 1.10 has CREATE_DEV_CONFIG; 1.13 and 1.15 check
 * ui32FuncID, 1.10 passes it through, 1.18 and later have none).
 */
#include <linux/delay.h>
#include <linux/err.h>
#include <linux/gfp.h>
#include <linux/io.h>
#include <linux/jiffies.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/string.h>
#include <linux/workqueue.h>

#include "pvrsrv.h"
#include "img_types.h"
#include "pvrsrv_error.h"
#include "rgxheapconfig.h"
#include "vmm_impl.h"
#include "vmm_pvz_server.h"
#if PVZ_TEST_DDK <= 115
#include "vmm_pvz_common.h"
#endif
#include "virtio_pvz_kapi.h"
#include "pvz_regs.h"
#include "vmm_type_virtio.h"

#if PVZ_TEST_DDK >= 118
#define ST_ABI 118
#else
#define ST_ABI PVZ_TEST_DDK
#endif

static char *mode = "guest";
module_param(mode, charp, 0444);
MODULE_PARM_DESC(mode, "guest | host (1.10 host-mode driver) | nodev (the VMM type finds no device)");
static unsigned int round = 1;
module_param(round, uint, 0444);
static bool expect_removed;
module_param(expect_removed, bool, 0644);
MODULE_PARM_DESC(expect_removed, "the device was unbound since load: calls must answer INVALID_DEVICE");
static char *host_abi = "1.10";
module_param(host_abi, charp, 0444);
MODULE_PARM_DESC(host_abi, "the host's --ddk-abi: 1.10, 1.13, 1.15, 1.18 or 23 (what it answers)");

/* host_abi as PVZ_TEST_DDK numbers it (23 is 230), 0 when unknown. */
static unsigned int HostAbi(void)
{
	static const struct { const char *pszName; unsigned int ui32Abi; } asAbi[] = {
		{ "1.10", 110 }, { "1.13", 113 }, { "1.15", 115 }, { "1.18", 118 }, { "23", 230 },
	};
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(asAbi); i++)
		if (!strcmp(host_abi, asAbi[i].pszName))
			return asAbi[i].ui32Abi;
	return 0;
}

/* The host checks ui32FuncID (Map 1, Unmap 2) only under 1.13 and 1.15. */
static bool HostChecksFuncID(void)
{
	return HostAbi() == 113 || HostAbi() == 115;
}

/* ---- the DDK pieces a guest links but this test does not have ---- */

static PVRSRV_DATA gsPVRSRVData;

PVRSRV_DATA *PVRSRVGetPVRSRVData(void)
{
	return &gsPVRSRVData;
}

#define ST_NAME(n) { n, #n }
static const struct { PVRSRV_ERROR e; const char *name; } gasErrorNames[] = {
	ST_NAME(PVRSRV_OK), ST_NAME(PVRSRV_ERROR_OUT_OF_MEMORY), ST_NAME(PVRSRV_ERROR_INVALID_PARAMS),
	ST_NAME(PVRSRV_ERROR_INIT_FAILURE), ST_NAME(PVRSRV_ERROR_INVALID_DEVICE),
	ST_NAME(PVRSRV_ERROR_BAD_MAPPING), ST_NAME(PVRSRV_ERROR_TIMEOUT),
	ST_NAME(PVRSRV_ERROR_NOT_IMPLEMENTED), ST_NAME(PVRSRV_ERROR_NOT_SUPPORTED),
	ST_NAME(PVRSRV_ERROR_RETRY), ST_NAME(PVRSRV_ERROR_INVALID_DEVINFO),
	ST_NAME(PVRSRV_ERROR_NO_DEVICENODE_FOUND), ST_NAME(PVRSRV_ERROR_INVALID_DEVICEID),
	ST_NAME(PVRSRV_ERROR_NOT_READY), ST_NAME(PVRSRV_ERROR_RESOURCE_UNAVAILABLE),
	ST_NAME(PVRSRV_ERROR_NOT_FOUND), ST_NAME(PVRSRV_ERROR_ALREADY_EXISTS),
	ST_NAME(PVRSRV_ERROR_INTERNAL_ERROR), ST_NAME(PVRSRV_ERROR_NOT_INITIALISED),
	ST_NAME(PVRSRV_ERROR_INVALID_PVZ_CONFIG), ST_NAME(PVRSRV_ERROR_INVALID_PVZ_OSID),
#if PVZ_TEST_DDK == 110
	ST_NAME(PVRSRV_ERROR_PVZ_OSID_IS_ONLINE),
#endif
	ST_NAME(PVRSRV_ERROR_PVZ_OSID_IS_OFFLINE),
#if PVZ_TEST_DDK >= 113
	ST_NAME(PVRSRV_ERROR_INTERRUPTED),
#endif
#if PVZ_TEST_DDK >= 118
	ST_NAME(PVRSRV_ERROR_OUT_OF_RANGE),
#endif
};

const char *PVRSRVGetErrorString(PVRSRV_ERROR eError)
{
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(gasErrorNames); i++)
		if (gasErrorNames[i].e == eError)
			return gasErrorNames[i].name;
	return "PVRSRV_ERROR_(unnamed)";
}

/* The host server's entries: a guest never calls them. */
#define ST_SERVER_ONLY(name) \
	pr_err("PVZDDK %s called in a guest\n", name); return PVRSRV_ERROR_NOT_SUPPORTED
#if PVZ_TEST_DDK == 110
PVRSRV_ERROR PvzServerCreateDevConfig(IMG_UINT32 a, IMG_UINT32 b, IMG_UINT32 c, IMG_UINT32 *d, IMG_UINT32 *e,
				      IMG_UINT64 *f) { ST_SERVER_ONLY("PvzServerCreateDevConfig"); }
PVRSRV_ERROR PvzServerDestroyDevConfig(IMG_UINT32 a, IMG_UINT32 b, IMG_UINT32 c)
{ ST_SERVER_ONLY("PvzServerDestroyDevConfig"); }
PVRSRV_ERROR PvzServerCreateDevPhysHeaps(IMG_UINT32 a, IMG_UINT32 b, IMG_UINT32 c, IMG_UINT32 *d, IMG_UINT64 *e,
					 IMG_UINT64 *f, IMG_UINT64 *g, IMG_UINT64 *h)
{ ST_SERVER_ONLY("PvzServerCreateDevPhysHeaps"); }
PVRSRV_ERROR PvzServerDestroyDevPhysHeaps(IMG_UINT32 a, IMG_UINT32 b, IMG_UINT32 c)
{ ST_SERVER_ONLY("PvzServerDestroyDevPhysHeaps"); }
#endif
#if PVZ_TEST_DDK <= 115
PVRSRV_ERROR PvzServerMapDevPhysHeap(IMG_UINT32 a, IMG_UINT32 b, IMG_UINT32 c, IMG_UINT64 d, IMG_UINT64 e)
{ ST_SERVER_ONLY("PvzServerMapDevPhysHeap"); }
PVRSRV_ERROR PvzServerUnmapDevPhysHeap(IMG_UINT32 a, IMG_UINT32 b, IMG_UINT32 c)
{ ST_SERVER_ONLY("PvzServerUnmapDevPhysHeap"); }
#if PVZ_TEST_DDK == 115
PVRSRV_ERROR PvzServerOnVmOnline(IMG_UINT32 a) { ST_SERVER_ONLY("PvzServerOnVmOnline"); }
#else
PVRSRV_ERROR PvzServerOnVmOnline(IMG_UINT32 a, IMG_UINT32 b) { ST_SERVER_ONLY("PvzServerOnVmOnline"); }
#endif
PVRSRV_ERROR PvzServerOnVmOffline(IMG_UINT32 a) { ST_SERVER_ONLY("PvzServerOnVmOffline"); }
PVRSRV_ERROR PvzServerVMMConfigure(VMM_CONF_PARAM a, IMG_UINT32 b) { ST_SERVER_ONLY("PvzServerVMMConfigure"); }
#else
PVRSRV_ERROR PvzServerMapDevPhysHeap(IMG_UINT32 a, IMG_UINT32 b, IMG_UINT64 c, IMG_UINT64 d)
{ ST_SERVER_ONLY("PvzServerMapDevPhysHeap"); }
PVRSRV_ERROR PvzServerUnmapDevPhysHeap(IMG_UINT32 a, IMG_UINT32 b) { ST_SERVER_ONLY("PvzServerUnmapDevPhysHeap"); }
PVRSRV_ERROR PvzServerOnVmOnline(IMG_UINT32 a, IMG_UINT32 b) { ST_SERVER_ONLY("PvzServerOnVmOnline"); }
PVRSRV_ERROR PvzServerOnVmOffline(IMG_UINT32 a, IMG_UINT32 b) { ST_SERVER_ONLY("PvzServerOnVmOffline"); }
PVRSRV_ERROR PvzServerVMMConfigure(VMM_CONF_PARAM a, IMG_UINT32 b, IMG_UINT32 c)
{ ST_SERVER_ONLY("PvzServerVMMConfigure"); }
#endif

/* ---- checks ---- */

static unsigned int guiPass, guiFail;

static __printf(3, 4) bool Check(const char *pszName, bool bOk, const char *pszFmt, ...)
{
	struct va_format vaf;
	va_list args;

	va_start(args, pszFmt);
	vaf.fmt = pszFmt;
	vaf.va = &args;
	pr_info("PVZDDK %u.%u %s %s %pV\n", PVZ_TEST_DDK, round, pszName, bOk ? "PASS" : "FAIL", &vaf);
	va_end(args);
	if (bOk)
		guiPass++;
	else
		guiFail++;
	return bOk;
}

/* A DDK call that must answer eWant. */
static bool CheckCall(const char *pszCall, PVRSRV_ERROR eGot, PVRSRV_ERROR eWant)
{
	return Check(pszCall, eGot == eWant, "= %s (%d), want %s", PVRSRVGetErrorString(eGot), eGot,
		     PVRSRVGetErrorString(eWant));
}

static void Summary(const char *pszPhase)
{
	pr_info("PVZDDK %u.%u %s: %u passed, %u failed\n", PVZ_TEST_DDK, round, pszPhase, guiPass, guiFail);
	guiPass = guiFail = 0;
}

/* ---- the guest's state, as a DDK keeps it ---- */

static VMM_PVZ_CONNECTION *gpsConn;
static struct page *gpsFwPages;      /* the firmware heap (the DDK's DMA heap) */
static u64 gui64FwPAddr;
static bool gbFwMapped, gbLISR;
static bool __maybe_unused gbDevConfig;  /* 1.10 only */

/* The LISR counts; the MISR (a work item, as the DDK defers) reads and
 * clears IRQ_STATUS through the register bank. */
static atomic_t gsLISRCalls = ATOMIC_INIT(0);
static u32 gui32MISRStatus;
static DECLARE_COMPLETION(gsMISRDone);

static void SelftestMISR(struct work_struct *w)
{
	struct virtio_pvz *psDev = VMMVirtioDevice();
	u32 ui32Status = 0;

	if (psDev && !virtio_pvz_read_reg(psDev, PVZ_REG_IRQ_STATUS, &ui32Status) && ui32Status) {
		gui32MISRStatus |= ui32Status;
		virtio_pvz_write_reg(psDev, PVZ_REG_IRQ_STATUS, ui32Status);
	}
	complete(&gsMISRDone);
}
static DECLARE_WORK(gsMISRWork, SelftestMISR);

static IMG_BOOL SelftestLISR(void *pvData)
{
	atomic_inc(&gsLISRCalls);
	schedule_work(&gsMISRWork);
	return IMG_TRUE;
}

static bool GuestMode(void)
{
	return strcmp(mode, "host") != 0;
}

/* ---- the calls, as each DDK version names them ---- */

#if ST_ABI == 110
#define DDK_MAP(size, pa) gpsConn->sHostFuncTab.pfnMapDevPhysHeap(PVZ_BRIDGE_MAPDEVICEPHYSHEAP, 0, size, pa)
#define DDK_MAP_DEV(dev, size, pa) gpsConn->sHostFuncTab.pfnMapDevPhysHeap(PVZ_BRIDGE_MAPDEVICEPHYSHEAP, dev, size, pa)
#define DDK_UNMAP() gpsConn->sHostFuncTab.pfnUnmapDevPhysHeap(PVZ_BRIDGE_UNMAPDEVICEPHYSHEAP, 0)
#define DDK_MAP_NAME "sHostFuncTab.pfnMapDevPhysHeap"
#define DDK_UNMAP_NAME "sHostFuncTab.pfnUnmapDevPhysHeap"
#elif ST_ABI <= 115
#define DDK_MAP(size, pa) gpsConn->sClientFuncTab.pfnMapDevPhysHeap(PVZ_BRIDGE_MAPDEVICEPHYSHEAP, 0, size, pa)
#define DDK_MAP_DEV(dev, size, pa) gpsConn->sClientFuncTab.pfnMapDevPhysHeap(PVZ_BRIDGE_MAPDEVICEPHYSHEAP, dev, size, pa)
#define DDK_UNMAP() gpsConn->sClientFuncTab.pfnUnmapDevPhysHeap(PVZ_BRIDGE_UNMAPDEVICEPHYSHEAP, 0)
#define DDK_MAP_NAME "sClientFuncTab.pfnMapDevPhysHeap"
#define DDK_UNMAP_NAME "sClientFuncTab.pfnUnmapDevPhysHeap"
#else
#define DDK_MAP(size, pa) gpsConn->sClientFuncTab.pfnMapDevPhysHeap(size, pa)
#define DDK_UNMAP() gpsConn->sClientFuncTab.pfnUnmapDevPhysHeap()
#define DDK_MAP_NAME "sClientFuncTab.pfnMapDevPhysHeap"
#define DDK_UNMAP_NAME "sClientFuncTab.pfnUnmapDevPhysHeap"
#endif

static bool Info(struct virtio_pvz_info *psInfo)
{
	struct virtio_pvz *psDev = VMMVirtioDevice();

	memset(psInfo, 0, sizeof(*psInfo));
	return psDev && !virtio_pvz_get_info(psDev, psInfo);
}

#if ST_ABI == 110
static const char *const gapszHeap[] = { "GPU_LOCAL", "CPU_LOCAL", "FW_LOCAL", "FW_GUEST", "EXTERNAL" };

/* SysVzPvzConnectionValidate's checks, in its order; then the policy's
 * stability (it is asked many times). Returns the FW heap's origin. */
static PVRSRV_DEVICE_PHYS_HEAP_ORIGIN Validate110(void)
{
	PVRSRV_DEVICE_PHYS_HEAP_ORIGIN eFw = PVRSRV_DEVICE_PHYS_HEAP_ORIGIN_LAST, eOrigin;
	IMG_UINT64 ui64Size, ui64Addr, ui64FwSize = 0, ui64FwAddr = 0;
	bool bOk = true;
	int i, k;

	bOk &= gpsConn->sConfigFuncTab.pfnGetDevPhysHeapOrigin && gpsConn->sConfigFuncTab.pfnGetDevPhysHeapAddrSize;
	if (!Check("SysVzPvzConnectionValidate.config_functions", bOk, "sConfigFuncTab entries set"))
		return eFw;
	CheckCall("sConfigFuncTab.pfnGetDevPhysHeapAddrSize(GPU_LOCAL)",
		  gpsConn->sConfigFuncTab.pfnGetDevPhysHeapAddrSize(NULL, PVRSRV_DEVICE_PHYS_HEAP_GPU_LOCAL,
								     &ui64Size, &ui64Addr), PVRSRV_OK);
	CheckCall("sConfigFuncTab.pfnGetDevPhysHeapAddrSize(FW_LOCAL)",
		  gpsConn->sConfigFuncTab.pfnGetDevPhysHeapAddrSize(NULL, PVRSRV_DEVICE_PHYS_HEAP_FW_LOCAL,
								     &ui64FwSize, &ui64FwAddr), PVRSRV_OK);
	CheckCall("sConfigFuncTab.pfnGetDevPhysHeapOrigin(FW_LOCAL)",
		  gpsConn->sConfigFuncTab.pfnGetDevPhysHeapOrigin(NULL, PVRSRV_DEVICE_PHYS_HEAP_FW_LOCAL, &eFw),
		  PVRSRV_OK);
	Check("SysVzPvzConnectionValidate.fw_origin", eFw < PVRSRV_DEVICE_PHYS_HEAP_ORIGIN_LAST, "origin %d", eFw);
	if (GuestMode() && eFw == PVRSRV_DEVICE_PHYS_HEAP_ORIGIN_GUEST)
		Check("SysVzPvzConnectionValidate.guest_map", gpsConn->sHostFuncTab.pfnMapDevPhysHeap != NULL,
		      "guest-origin firmware heap needs sHostFuncTab.pfnMapDevPhysHeap");
	/* What a host build requires; the same table serves both. */
	Check("SysVzPvzConnectionValidate.server_table",
	      gpsConn->sGuestFuncTab.pfnCreateDevConfig && gpsConn->sGuestFuncTab.pfnDestroyDevConfig &&
	      gpsConn->sGuestFuncTab.pfnCreateDevPhysHeaps && gpsConn->sGuestFuncTab.pfnDestroyDevPhysHeaps &&
	      gpsConn->sGuestFuncTab.pfnMapDevPhysHeap && gpsConn->sGuestFuncTab.pfnUnmapDevPhysHeap &&
	      gpsConn->sVmmFuncTab.pfnOnVmOnline && gpsConn->sVmmFuncTab.pfnOnVmOffline &&
	      gpsConn->sVmmFuncTab.pfnVMMConfigure, "sGuestFuncTab and sVmmFuncTab set");
	if (eFw == PVRSRV_DEVICE_PHYS_HEAP_ORIGIN_HOST)
		Check("SysVzPvzConnectionValidate.host_fw_heap", ui64FwSize && ui64FwAddr,
		      "host-origin firmware heap %#llx+%#llx must not be 0/0", ui64FwAddr, ui64FwSize);

	/* The answers do not change, and a bad heap id is refused. */
	for (i = 0; i < PVRSRV_DEVICE_PHYS_HEAP_LAST; i++) {
		IMG_UINT64 s0, a0;
		PVRSRV_DEVICE_PHYS_HEAP_ORIGIN o0;

		gpsConn->sConfigFuncTab.pfnGetDevPhysHeapOrigin(NULL, i, &o0);
		gpsConn->sConfigFuncTab.pfnGetDevPhysHeapAddrSize(NULL, i, &s0, &a0);
		for (k = 0; k < 3; k++) {
			gpsConn->sConfigFuncTab.pfnGetDevPhysHeapOrigin(NULL, i, &eOrigin);
			gpsConn->sConfigFuncTab.pfnGetDevPhysHeapAddrSize(NULL, i, &ui64Size, &ui64Addr);
			bOk &= eOrigin == o0 && ui64Size == s0 && ui64Addr == a0;
		}
		pr_info("PVZDDK %u.%u policy %s origin=%s addr=%#llx size=%#llx\n", PVZ_TEST_DDK, round,
			gapszHeap[i], o0 == PVRSRV_DEVICE_PHYS_HEAP_ORIGIN_HOST ? "HOST" : "GUEST", a0, s0);
	}
	Check("sConfigFuncTab.stable", bOk, "same answers over 4 rounds of all heaps");
	CheckCall("sConfigFuncTab.pfnGetDevPhysHeapOrigin(LAST)",
		  gpsConn->sConfigFuncTab.pfnGetDevPhysHeapOrigin(NULL, PVRSRV_DEVICE_PHYS_HEAP_LAST, &eOrigin),
		  PVRSRV_ERROR_INVALID_PARAMS);
	CheckCall("SysVzPvzConnectionValidate", bOk ? PVRSRV_OK : PVRSRV_ERROR_INVALID_PVZ_CONFIG, PVRSRV_OK);
	return eFw;
}

/* 1.10 only: the device config (PvzClientCreateDevConfig), the heap policy
 * the DDK builds its heaps from (SysVzInitDevPhysHeaps), host heaps. */
static bool Up110DevConfigAndPolicy(PVRSRV_DEVICE_PHYS_HEAP_ORIGIN eFw)
{
	struct virtio_pvz_info sInfo;
	IMG_UINT32 ui32IRQ = 0, ui32RegsSize = 0, ui32Type = 0;
	IMG_UINT64 ui64RegsBase = 0, ui64Size, ui64Addr, s[4];
	PVRSRV_DEVICE_PHYS_HEAP_ORIGIN eGpu;
	PVRSRV_ERROR eError;

	eError = gpsConn->sHostFuncTab.pfnCreateDevConfig(PVZ_BRIDGE_CREATEDEVICECONFIG, 0, &ui32IRQ, &ui32RegsSize,
							  &ui64RegsBase);
	if (!CheckCall("sHostFuncTab.pfnCreateDevConfig", eError, PVRSRV_OK))
		return false;
	gbDevConfig = true;
	Info(&sInfo);
	Check("CreateDevConfig.matches_config_space",
	      ui32IRQ == sInfo.irq && ui64RegsBase == sInfo.regs_ipa && ui32RegsSize == sInfo.regs_size &&
	      (sInfo.status & PVZ_STATUS_DEV_CONFIG),
	      "irq %u regs %#llx+%#x; config space irq %u regs %#llx+%#x status %#x", ui32IRQ, ui64RegsBase,
	      ui32RegsSize, sInfo.irq, sInfo.regs_ipa, sInfo.regs_size, sInfo.status);
	CheckCall("sHostFuncTab.pfnCreateDevConfig(again)",
		  gpsConn->sHostFuncTab.pfnCreateDevConfig(PVZ_BRIDGE_CREATEDEVICECONFIG, 0, &ui32IRQ, &ui32RegsSize,
							   &ui64RegsBase), PVRSRV_ERROR_ALREADY_EXISTS);
	CheckCall("sHostFuncTab.pfnCreateDevConfig(DevID 1)",
		  gpsConn->sHostFuncTab.pfnCreateDevConfig(PVZ_BRIDGE_CREATEDEVICECONFIG, 1, &ui32IRQ, &ui32RegsSize,
							   &ui64RegsBase), PVRSRV_ERROR_INVALID_PARAMS);

	if (eFw == PVRSRV_DEVICE_PHYS_HEAP_ORIGIN_HOST) {
		eError = gpsConn->sHostFuncTab.pfnCreateDevPhysHeaps(PVZ_BRIDGE_CREATEDEVICEPHYSHEAPS, 0, &ui32Type,
								     &s[0], &s[1], &s[2], &s[3]);
		CheckCall("sHostFuncTab.pfnCreateDevPhysHeaps", eError, PVRSRV_OK);
	}

	/* SysVzInitDevPhysHeaps: the firmware heap, then the GPU heap. */
	gpsConn->sConfigFuncTab.pfnGetDevPhysHeapAddrSize(NULL, PVRSRV_DEVICE_PHYS_HEAP_FW_LOCAL, &ui64Size, &ui64Addr);
	if (eFw == PVRSRV_DEVICE_PHYS_HEAP_ORIGIN_GUEST)
		Check("policy.fw_heap", ui64Addr == 0 && ui64Size == RGX_FIRMWARE_RAW_HEAP_SIZE,
		      "guest origin: %#llx/%#llx, want 0/RGX_FIRMWARE_RAW_HEAP_SIZE %#x (DMA)", ui64Addr, ui64Size,
		      RGX_FIRMWARE_RAW_HEAP_SIZE);
	gpsConn->sConfigFuncTab.pfnGetDevPhysHeapOrigin(NULL, PVRSRV_DEVICE_PHYS_HEAP_GPU_LOCAL, &eGpu);
	gpsConn->sConfigFuncTab.pfnGetDevPhysHeapAddrSize(NULL, PVRSRV_DEVICE_PHYS_HEAP_GPU_LOCAL, &ui64Size, &ui64Addr);
	if (eGpu == PVRSRV_DEVICE_PHYS_HEAP_ORIGIN_HOST) {
		/* Made by the host in this guest's carve-out: after the
		 * register bank, 4 KiB aligned. */
		Check("policy.gpu_heap", ui64Size && ui64Addr >= sInfo.regs_ipa + sInfo.regs_size &&
		      !(ui64Addr & 0xfff) && !(ui64Size & 0xfff),
		      "host origin: %#llx+%#llx (register bank %#llx)", ui64Addr, ui64Size, sInfo.regs_ipa);
		pr_info("PVZHEAP GPU_LOCAL ipa=%#llx size=%#llx\n", ui64Addr, ui64Size);
	} else {
		Check("policy.gpu_heap", ui64Addr == 0, "guest origin: %#llx/%#llx", ui64Addr, ui64Size);
	}
	return true;
}
#endif

#if ST_ABI >= 113
/*
 * What the host's ABI makes of calls and ids that are not this DDK's: only
 * 1.10 has CREATE_DEV_CONFIG (a later host answers NOT_IMPLEMENTED); 1.13
 * and 1.15 check ui32FuncID (Unmap is 2), 1.10 passes it through and 1.18
 * and later have none, so Unmap with 1.10's id 6 is INVALID_PARAMS or
 * NOT_FOUND (nothing is mapped yet); 0 means "not given" everywhere.
 */
static void HostAbiChecks(void)
{
	struct virtio_pvz *psDev = VMMVirtioDevice();
	u32 ui32IRQ, ui32RegsSize;
	u64 ui64RegsBase;
	int iResult, iWant;

	if (!psDev)
		return;
	if (HostAbi() != 110) {
		iResult = virtio_pvz_create_dev_config(psDev, 0, 0, &ui32IRQ, &ui32RegsSize, &ui64RegsBase);
		Check("host_abi.create_dev_config", iResult == PVZ_NOT_IMPLEMENTED,
		      "CREATE_DEV_CONFIG under a %s host: %d, want NOT_IMPLEMENTED (%d): only DDK 1.10 has it",
		      host_abi, iResult, PVZ_NOT_IMPLEMENTED);
	}
	iResult = virtio_pvz_unmap_dev_phys_heap(psDev, 6, 0);
	iWant = HostChecksFuncID() ? PVZ_INVALID_PARAMS : PVZ_NOT_FOUND;
	Check("host_abi.unmap_func_id_6", iResult == iWant, "UNMAP_DEV_PHYS_HEAP with ui32FuncID 6 under a %s host: %d, want %s (%d)",
	      host_abi, iResult, HostChecksFuncID() ? "INVALID_PARAMS: the id is checked" : "NOT_FOUND: the id is not checked",
	      iWant);
	iResult = virtio_pvz_unmap_dev_phys_heap(psDev, 0, 0);
	Check("host_abi.unmap_func_id_0", iResult == PVZ_NOT_FOUND,
	      "UNMAP_DEV_PHYS_HEAP with ui32FuncID 0 (not given): %d, want NOT_FOUND (%d)", iResult, PVZ_NOT_FOUND);
}
#endif

/* The firmware heap: the DDK allocates it itself (1.10: a DMA heap of the
 * policy's size; 1.13+: RGX_FIRMWARE_RAW_HEAP_SIZE from its sysconfig) and
 * maps it; wrong calls first. */
static void UpFwHeap(void)
{
	struct virtio_pvz_info sInfo;
	PVRSRV_ERROR eError;

	gpsFwPages = alloc_pages(GFP_KERNEL | __GFP_ZERO | __GFP_NOWARN, get_order(RGX_FIRMWARE_RAW_HEAP_SIZE));
	if (!Check("fw_heap.alloc", gpsFwPages != NULL, "%#x bytes, physically contiguous",
		   RGX_FIRMWARE_RAW_HEAP_SIZE))
		return;
	gui64FwPAddr = page_to_phys(gpsFwPages);
	pr_info("PVZDDK %u.%u fw_heap at %#llx+%#x\n", PVZ_TEST_DDK, round, gui64FwPAddr, RGX_FIRMWARE_RAW_HEAP_SIZE);

	CheckCall(DDK_MAP_NAME "(PAddr 0)", DDK_MAP(RGX_FIRMWARE_RAW_HEAP_SIZE, 0), PVRSRV_ERROR_INVALID_PARAMS);
	CheckCall(DDK_MAP_NAME "(size - 4 KiB)", DDK_MAP(RGX_FIRMWARE_RAW_HEAP_SIZE - 4096, gui64FwPAddr),
		  PVRSRV_ERROR_INVALID_PARAMS);
#if ST_ABI <= 115
	CheckCall(DDK_MAP_NAME "(DevID 1)", DDK_MAP_DEV(1, RGX_FIRMWARE_RAW_HEAP_SIZE, gui64FwPAddr),
		  PVRSRV_ERROR_INVALID_PARAMS);
#endif
	if (HostChecksFuncID()) {
		/* Unmap's id on a Map: refused before anything is mapped (a host
		 * that does not check would map the heap here). */
		int iResult = virtio_pvz_map_dev_phys_heap(VMMVirtioDevice(), 2, 0, RGX_FIRMWARE_RAW_HEAP_SIZE,
							   gui64FwPAddr);

		Check("host_abi.map_func_id_2", iResult == PVZ_INVALID_PARAMS,
		      "MAP_DEV_PHYS_HEAP with ui32FuncID 2 under a %s host: %d, want INVALID_PARAMS (%d)", host_abi,
		      iResult, PVZ_INVALID_PARAMS);
	}
	CheckCall(DDK_UNMAP_NAME "(nothing mapped)", DDK_UNMAP(), PVRSRV_ERROR_NOT_FOUND);

	eError = DDK_MAP(RGX_FIRMWARE_RAW_HEAP_SIZE, gui64FwPAddr);
	if (!CheckCall(DDK_MAP_NAME, eError, PVRSRV_OK))
		return;
	gbFwMapped = true;
	Info(&sInfo);
	Check("fw_heap.config_space", (sInfo.status & PVZ_STATUS_FW_HEAP_MAPPED) && sInfo.fw_heap_ipa == gui64FwPAddr &&
	      sInfo.fw_heap_size == RGX_FIRMWARE_RAW_HEAP_SIZE,
	      "status %#x fw_heap %#llx+%#llx", sInfo.status, sInfo.fw_heap_ipa, sInfo.fw_heap_size);
	CheckCall(DDK_MAP_NAME "(again)", DDK_MAP(RGX_FIRMWARE_RAW_HEAP_SIZE, gui64FwPAddr),
		  PVRSRV_ERROR_ALREADY_EXISTS);
	pr_info("PVZHEAP FW_LOCAL ipa=%#llx size=%#x\n", gui64FwPAddr, RGX_FIRMWARE_RAW_HEAP_SIZE);
}

/* Events: the firmware (the host's emulation) serves the kernel command
 * ring in the heap; an IRQ command and the completion are two events, each
 * one LISR call; the MISR sees IRQ_STATUS's firmware bit and clears it. */
static void UpEvents(void)
{
	u8 *pui8Heap = page_address(gpsFwPages);
	struct pvz_cmd *psCmd = (struct pvz_cmd *)(pui8Heap + PVZ_RING_HDR_SIZE);
	volatile __le64 *pui64Seq = (volatile __le64 *)(pui8Heap + PVZ_RING_OFF_SEQ);
	volatile __le64 *pui64Fence = (volatile __le64 *)(pui8Heap + 0x10000);
	unsigned long ulDeadline;
	u32 ui32Status = 0;
	int iErr;

	*(__le32 *)(pui8Heap + PVZ_RING_OFF_SIZE) = cpu_to_le32(4096);
	*(__le32 *)(pui8Heap + PVZ_RING_OFF_WRITE) = 0;
	psCmd[0] = (struct pvz_cmd){ .op = cpu_to_le32(PVZ_OP_IRQ), .seq = cpu_to_le64(1),
				     .arg0 = cpu_to_le64(0xDD0E0001u) };
	psCmd[1] = (struct pvz_cmd){ .op = cpu_to_le32(PVZ_OP_FENCE), .seq = cpu_to_le64(2),
				     .arg0 = cpu_to_le64(0x10000), .arg1 = cpu_to_le64(0xDDC0FFEEull) };
	*(__le32 *)(pui8Heap + PVZ_RING_OFF_WRITE) = cpu_to_le32(2 * PVZ_CMD_SIZE);
	smp_wmb();
	WRITE_ONCE(*(__le32 *)(pui8Heap + PVZ_RING_OFF_MAGIC), cpu_to_le32(PVZ_RING_MAGIC));
	mb();
	atomic_set(&gsLISRCalls, 0);
	reinit_completion(&gsMISRDone);
	iErr = virtio_pvz_kick(VMMVirtioDevice(), 2 * PVZ_CMD_SIZE);
	Check("events.kick", iErr == 0, "virtio_pvz_kick: %d", iErr);
	ulDeadline = jiffies + msecs_to_jiffies(5000);
	while ((le64_to_cpu(READ_ONCE(*pui64Seq)) < 2 || atomic_read(&gsLISRCalls) < 2) &&
	       time_before(jiffies, ulDeadline))
		msleep(5);
	Check("events.firmware_ran", le64_to_cpu(READ_ONCE(*pui64Seq)) == 2 &&
	      le64_to_cpu(READ_ONCE(*pui64Fence)) == 0xDDC0FFEEull,
	      "completed_seq %llu (want 2), fence %#llx", le64_to_cpu(READ_ONCE(*pui64Seq)),
	      le64_to_cpu(READ_ONCE(*pui64Fence)));
	Check("events.lisr", atomic_read(&gsLISRCalls) >= 2, "%d LISR calls (IRQ command + completion: 2)",
	      atomic_read(&gsLISRCalls));
	wait_for_completion_timeout(&gsMISRDone, msecs_to_jiffies(5000));
	flush_work(&gsMISRWork);
	Check("events.misr_irq_status", gui32MISRStatus & PVZ_IRQ_STATUS_FW, "IRQ_STATUS seen by the MISR %#x",
	      gui32MISRStatus);
	virtio_pvz_read_reg(VMMVirtioDevice(), PVZ_REG_IRQ_STATUS, &ui32Status);
	Check("events.irq_status_cleared", !(ui32Status & PVZ_IRQ_STATUS_FW), "IRQ_STATUS now %#x", ui32Status);
}

#if ST_ABI == 110
/*
 * DDK 1.10 under a host of a later ABI: the calls it starts with (the heap
 * policy's host heaps, then its device config) exist only in 1.10, so the
 * host answers NOT_IMPLEMENTED and the DDK's device creation fails right
 * there. Nothing may be left claimed or created.
 */
static void Up110UnderLaterHost(void)
{
	const char *pszCall = "VMMCreatePvzConnection";
	IMG_UINT32 ui32IRQ = 0, ui32RegsSize = 0;
	IMG_UINT64 ui64RegsBase = 0;
	PVRSRV_ERROR eError = VMMCreatePvzConnection(&gpsConn);

	if (eError == PVRSRV_OK) {
		/* A policy with no host-origin heap gets this far. */
		pr_info("PVZDDK %u.%u VMMCreatePvzConnection ok\n", PVZ_TEST_DDK, round);
		pszCall = "sHostFuncTab.pfnCreateDevConfig";
		eError = gpsConn->sHostFuncTab.pfnCreateDevConfig(PVZ_BRIDGE_CREATEDEVICECONFIG, 0, &ui32IRQ,
								  &ui32RegsSize, &ui64RegsBase);
	} else {
		gpsConn = NULL;
	}
	if (Check("host_abi.ddk_start_refused", eError == PVRSRV_ERROR_NOT_IMPLEMENTED,
		  "%s under a %s host = %s (%d), want PVRSRV_ERROR_NOT_IMPLEMENTED", pszCall, host_abi,
		  PVRSRVGetErrorString(eError), eError))
		pr_info("PVZDDK %u.%u refused by the %s host at %s\n", PVZ_TEST_DDK, round, host_abi, pszCall);
	if (!gpsConn)
		Check("host_abi.device_released", VMMVirtioDevice() == NULL, "the failed connection keeps no claim");
}
#endif

static int __init SelftestInit(void)
{
	PVRSRV_ERROR eError;

	gsPVRSRVData.eDriverMode = GuestMode() ? DRIVER_MODE_GUEST : DRIVER_MODE_HOST;
	pr_info("PVZDDK %u.%u start: mode %s, host ABI %s, RGX_FIRMWARE_RAW_HEAP_SIZE %#x\n", PVZ_TEST_DDK, round,
		mode, host_abi, RGX_FIRMWARE_RAW_HEAP_SIZE);
	if (!Check("host_abi", HostAbi() != 0, "'%s' (1.10, 1.13, 1.15, 1.18 or 23)", host_abi))
		goto out;
#if ST_ABI == 110
	if (GuestMode() && HostAbi() != 110) {
		Up110UnderLaterHost();
		goto out;
	}
#endif

	eError = VMMCreatePvzConnection(&gpsConn);
	if (!CheckCall("VMMCreatePvzConnection", eError, PVRSRV_OK) || !gpsConn) {
		gpsConn = NULL;
		goto out;
	}
	pr_info("PVZDDK %u.%u VMMCreatePvzConnection ok\n", PVZ_TEST_DDK, round);
#if ST_ABI == 110
	{
		PVRSRV_DEVICE_PHYS_HEAP_ORIGIN eFw = Validate110();

		if (!GuestMode()) {
			IMG_UINT64 s, a;
			PVRSRV_DEVICE_PHYS_HEAP_ORIGIN o;
			bool bStub = true;
			int i;

			for (i = 0; i < PVRSRV_DEVICE_PHYS_HEAP_LAST; i++) {
				gpsConn->sConfigFuncTab.pfnGetDevPhysHeapOrigin(NULL, i, &o);
				gpsConn->sConfigFuncTab.pfnGetDevPhysHeapAddrSize(NULL, i, &s, &a);
				bStub &= o == PVRSRV_DEVICE_PHYS_HEAP_ORIGIN_GUEST && !s && !a;
			}
			Check("host_mode.stub_policy", bStub, "every heap GUEST 0/0");
			Check("host_mode.no_device", VMMVirtioDevice() == NULL, "no device claimed");
			goto out;
		}
		if (!Up110DevConfigAndPolicy(eFw))
			goto out;
	}
#else
	Check("connection.tables", gpsConn->sClientFuncTab.pfnMapDevPhysHeap &&
	      gpsConn->sClientFuncTab.pfnUnmapDevPhysHeap && gpsConn->sServerFuncTab.pfnMapDevPhysHeap &&
	      gpsConn->sServerFuncTab.pfnUnmapDevPhysHeap && gpsConn->sVmmFuncTab.pfnOnVmOnline &&
	      gpsConn->sVmmFuncTab.pfnOnVmOffline && gpsConn->sVmmFuncTab.pfnVMMConfigure,
	      "sClientFuncTab, sServerFuncTab, sVmmFuncTab set");
	if (!strcmp(mode, "nodev")) {
		/* 1.13+ ignores VMMCreatePvzConnection's result: the missing
		 * device must show at the first Map instead. */
		Check("nodev.no_device", VMMVirtioDevice() == NULL, "no device claimed");
		CheckCall(DDK_MAP_NAME "(no device)", DDK_MAP(RGX_FIRMWARE_RAW_HEAP_SIZE, 0x10000000),
			  PVRSRV_ERROR_NO_DEVICENODE_FOUND);
		goto out;
	}
	{
		struct virtio_pvz_info sInfo;

		Info(&sInfo);
		Check("no_dev_config", !(sInfo.status & PVZ_STATUS_DEV_CONFIG), "a 1.13+ guest creates none: status %#x",
		      sInfo.status);
	}
	HostAbiChecks();
#endif
	eError = VMMVirtioInstallLISR(SelftestLISR, NULL);
	if (CheckCall("SysInstallDeviceLISR (VMMVirtioInstallLISR)", eError, PVRSRV_OK))
		gbLISR = true;
	CheckCall("VMMVirtioInstallLISR(again)", VMMVirtioInstallLISR(SelftestLISR, NULL),
		  PVRSRV_ERROR_RESOURCE_UNAVAILABLE);
	UpFwHeap();
	if (gbFwMapped && gbLISR)
		UpEvents();
out:
	Summary("up");
	return 0;
}

static void __exit SelftestExit(void)
{
	struct virtio_pvz_info sInfo;
	struct virtio_pvz *psDev;
	PVRSRV_ERROR eWant = expect_removed ? PVRSRV_ERROR_INVALID_DEVICE : PVRSRV_OK;
	bool bHostHeaps = false;

	pr_info("PVZDDK %u.%u teardown%s\n", PVZ_TEST_DDK, round, expect_removed ? " (device removed)" : "");
	if (gbLISR)
		VMMVirtioUninstallLISR();
	cancel_work_sync(&gsMISRWork);
	if (gpsConn && VMMVirtioDevice()) {
		Info(&sInfo);
		Check("teardown.device_state", sInfo.removed == expect_removed, "removed %d, expected %d",
		      sInfo.removed, expect_removed);
	}
	if (gbFwMapped) {
		CheckCall(DDK_UNMAP_NAME, DDK_UNMAP(), eWant);
		Info(&sInfo);
		/* Free only what the host no longer maps. */
		if (Check("fw_heap.unmapped", !(sInfo.status & PVZ_STATUS_FW_HEAP_MAPPED),
			  "status %#x fw_heap %#llx+%#llx", sInfo.status, sInfo.fw_heap_ipa, sInfo.fw_heap_size)) {
			__free_pages(gpsFwPages, get_order(RGX_FIRMWARE_RAW_HEAP_SIZE));
		} else {
			pr_err("PVZDDK leaking the firmware heap: the host may still write it\n");
		}
		gpsFwPages = NULL;
		if (!expect_removed)
			CheckCall(DDK_UNMAP_NAME "(again)", DDK_UNMAP(), PVRSRV_ERROR_NOT_FOUND);
	} else if (gpsFwPages) {
		__free_pages(gpsFwPages, get_order(RGX_FIRMWARE_RAW_HEAP_SIZE));
		gpsFwPages = NULL;
	}
#if ST_ABI == 110
	if (gpsConn && GuestMode()) {
		PVRSRV_DEVICE_PHYS_HEAP_ORIGIN eFw, eGpu;

		gpsConn->sConfigFuncTab.pfnGetDevPhysHeapOrigin(NULL, PVRSRV_DEVICE_PHYS_HEAP_FW_LOCAL, &eFw);
		gpsConn->sConfigFuncTab.pfnGetDevPhysHeapOrigin(NULL, PVRSRV_DEVICE_PHYS_HEAP_GPU_LOCAL, &eGpu);
		bHostHeaps = eFw == PVRSRV_DEVICE_PHYS_HEAP_ORIGIN_HOST || eGpu == PVRSRV_DEVICE_PHYS_HEAP_ORIGIN_HOST;
		if (eFw == PVRSRV_DEVICE_PHYS_HEAP_ORIGIN_HOST)
			CheckCall("sHostFuncTab.pfnDestroyDevPhysHeaps",
				  gpsConn->sHostFuncTab.pfnDestroyDevPhysHeaps(PVZ_BRIDGE_DESTROYDEVICEPHYSHEAPS, 0),
				  eWant);
	}
	if (gbDevConfig) {
		CheckCall("sHostFuncTab.pfnDestroyDevConfig",
			  gpsConn->sHostFuncTab.pfnDestroyDevConfig(PVZ_BRIDGE_DESTROYDEVICECONFIG, 0), eWant);
		Info(&sInfo);
		Check("dev_config.destroyed", !(sInfo.status & PVZ_STATUS_DEV_CONFIG), "status %#x", sInfo.status);
	}
#endif
	if (gpsConn) {
		VMMDestroyPvzConnection(gpsConn);
		pr_info("PVZDDK %u.%u VMMDestroyPvzConnection ok\n", PVZ_TEST_DDK, round);
		Check("VMMDestroyPvzConnection", VMMVirtioDevice() == NULL, "the device is released");
	}
	/* The claim is given back: the device can be claimed again, and
	 * holds nothing of the DDK's. */
	if (GuestMode() && strcmp(mode, "nodev")) {
		psDev = virtio_pvz_get(0, 0);
		if (expect_removed) {
			Check("teardown.device_gone", PTR_ERR_OR_ZERO(psDev) == -ETIMEDOUT,
			      "virtio_pvz_get: %d (no device bound)", PTR_ERR_OR_ZERO(psDev));
		} else if (Check("teardown.claim_released", !IS_ERR(psDev), "virtio_pvz_get: %d",
				 PTR_ERR_OR_ZERO(psDev))) {
			u64 ui64Size = 0, ui64Addr = 0;
			int r;

			virtio_pvz_get_info(psDev, &sInfo);
			Check("teardown.host_state_clear",
			      !(sInfo.status & (PVZ_STATUS_FW_HEAP_MAPPED | PVZ_STATUS_DEV_CONFIG)),
			      "status %#x", sInfo.status);
			if (bHostHeaps) {
				r = virtio_pvz_get_dev_phys_heap_addr_size(psDev, PVRSRV_DEVICE_PHYS_HEAP_GPU_LOCAL,
									   &ui64Size, &ui64Addr);
				Check("teardown.host_heaps_destroyed", r == PVZ_NOT_FOUND,
				      "GET_DEV_PHYS_HEAP_ADDR_SIZE(GPU_LOCAL) = %d (NOT_FOUND %d)", r, PVZ_NOT_FOUND);
			}
			virtio_pvz_put(psDev);
		}
	}
	(void)bHostHeaps;
	Summary("down");
}

module_init(SelftestInit);
module_exit(SelftestExit);
MODULE_DESCRIPTION("DDK-style self-test of vmm_type_virtio.c over virtio_pvz");
MODULE_LICENSE("GPL");
