// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * vmm_type_virtio.c: the PowerVR DDK's VM manager type for a guest whose PVZ
 * transport is virtio-pvz (the virtio_pvz module's in-kernel API,
 * virtio_pvz_kapi.h). A DDK build takes it as it is: put it (and
 * vmm_type_virtio.h) where the DDK keeps its vmm_type_*.c and build with
 * VMM_TYPE := virtio (docs/ddk-integration.md says where, per version).
 *
 * Which connection table it fills follows the DDK version (pvrversion.h), or
 * VMM_VIRTIO_DDK_ABI if the build sets it:
 *   110  DDK 1.10: sHostFuncTab (the six calls), sGuestFuncTab (the host
 *        server's), sConfigFuncTab (the heap policy), sVmmFuncTab
 *   113  DDK 1.13: sClientFuncTab Map/Unmap with ui32FuncID, sServerFuncTab,
 *        sVmmFuncTab with OnVmOnline(OSID, Priority)
 *   115  DDK 1.15: as 113, OnVmOnline(OSID)
 *   118  DDK 1.18 and 23.x: Map(Size, PAddr), Unmap(void); DevID on the host
 *        side
 * Every call is one hypercall on the device's hypercallq; Map and Unmap are
 * MAP_DEV_PHYS_HEAP and UNMAP_DEV_PHYS_HEAP (functions 5 and 6) in every ABI.
 * A status from the host or a transport error becomes the PVRSRV_ERROR of
 * the same meaning in the DDK being built (the names are the DDK's, so are
 * the values).
 *
 * Guest mode only: the host is the vhost-user-pvz daemon, not a DDK. In a
 * 1.10 host or native build the table still links (the host entries are the
 * DDK's PvzServer*), the policy answers like the DDK's stub and no device is
 * looked for.
 *
 * Context: the DDK makes the host calls in process context under its own PVZ
 * connection lock; they sleep until the host answers (at most
 * virtio_pvz.call_timeout_ms). The 1.10 policy functions are called without
 * that lock, many times: they answer from what VMMCreatePvzConnection
 * learned, so the answer never changes while the connection lives.
 */
#include <linux/err.h>
#include <linux/errno.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/printk.h>

#include "pvrsrv.h"
#include "img_types.h"
#include "pvrsrv_error.h"
#include "pvrversion.h"
#include "rgxheapconfig.h"
#include "syscommon.h"
#include "vmm_impl.h"
#include "vmm_pvz_server.h"

#include "virtio_pvz_kapi.h"
#include "vmm_type_virtio.h"

#if !defined(VMM_VIRTIO_DDK_ABI)
#if PVRVERSION_MAJ == 1 && PVRVERSION_MIN == 10
#define VMM_VIRTIO_DDK_ABI 110
#elif PVRVERSION_MAJ == 1 && PVRVERSION_MIN == 13
#define VMM_VIRTIO_DDK_ABI 113
#elif PVRVERSION_MAJ == 1 && PVRVERSION_MIN == 15
#define VMM_VIRTIO_DDK_ABI 115
#elif (PVRVERSION_MAJ == 1 && PVRVERSION_MIN == 18) || PVRVERSION_MAJ == 23
#define VMM_VIRTIO_DDK_ABI 118
#else
#error "vmm_type_virtio.c: this DDK version was not compared with the file; check vmm_impl.h against docs/ddk-integration.md and build with VMM_VIRTIO_DDK_ABI=110, 113, 115 or 118"
#endif
#endif
#if VMM_VIRTIO_DDK_ABI != 110 && VMM_VIRTIO_DDK_ABI != 113 && VMM_VIRTIO_DDK_ABI != 115 && \
	VMM_VIRTIO_DDK_ABI != 118
#error "VMM_VIRTIO_DDK_ABI must be 110, 113, 115 or 118"
#endif
#if VMM_VIRTIO_DDK_ABI <= 115
#include "vmm_pvz_common.h"
#endif

#define VV_PREFIX "vmm_type_virtio: "

static unsigned int vmm_virtio_device;
module_param(vmm_virtio_device, uint, 0444);
MODULE_PARM_DESC(vmm_virtio_device, "virtio-pvz device the PVZ connection uses: 0 is /dev/pvz, 1 /dev/pvz1, ...");

static unsigned int vmm_virtio_wait_ms = 10000;
module_param(vmm_virtio_wait_ms, uint, 0644);
MODULE_PARM_DESC(vmm_virtio_wait_ms, "how long the connection waits for that device to be bound (ms)");

/* The claimed device and what the connection set up; gsVirtioLock. */
static DEFINE_MUTEX(gsVirtioLock);
static struct virtio_pvz *gpsVirtioDev;
static unsigned int gui32VirtioConnections;

static struct {
	PFN_LISR pfnLISR;
	void *pvData;
} gsVirtioLISR;

/* ---- status mapping ---- */

/* A device status (> 0), PVZ_OK, or a negative errno from virtio_pvz, as the
 * PVRSRV_ERROR of the same meaning in this DDK. */
static PVRSRV_ERROR VirtioToPvrsrvError(int iResult)
{
	switch (iResult) {
	case PVZ_OK:
		return PVRSRV_OK;
	case PVZ_NOT_IMPLEMENTED:
		return PVRSRV_ERROR_NOT_IMPLEMENTED;
	case PVZ_INVALID_PARAMS:
		return PVRSRV_ERROR_INVALID_PARAMS;
	case PVZ_OUT_OF_MEMORY:
		return PVRSRV_ERROR_OUT_OF_MEMORY;
	case PVZ_INVALID_OSID:
		return PVRSRV_ERROR_INVALID_PVZ_OSID;
	case PVZ_ALREADY_EXISTS:
		return PVRSRV_ERROR_ALREADY_EXISTS;
	case PVZ_NOT_FOUND:
		return PVRSRV_ERROR_NOT_FOUND;
	case PVZ_ADDRESS_OUT_OF_RANGE:
#if VMM_VIRTIO_DDK_ABI >= 118
		return PVRSRV_ERROR_OUT_OF_RANGE;
#else
		/* No OUT_OF_RANGE before 1.18; the DDK host's own range checks
		 * answer INVALID_PARAMS. */
		return PVRSRV_ERROR_INVALID_PARAMS;
#endif
	case PVZ_MALFORMED_REQUEST:
		/* This file built the request: a bug here or in the host. */
		return PVRSRV_ERROR_INTERNAL_ERROR;
	case PVZ_VM_OFFLINE:
		return PVRSRV_ERROR_PVZ_OSID_IS_OFFLINE;
	case PVZ_INVALID_PVZ_CONFIG:
		return PVRSRV_ERROR_INVALID_PVZ_CONFIG;
	case -ETIMEDOUT:
		return PVRSRV_ERROR_TIMEOUT;
	case -EINTR:
	case -ERESTARTSYS:
#if VMM_VIRTIO_DDK_ABI >= 113
		return PVRSRV_ERROR_INTERRUPTED;
#else
		return PVRSRV_ERROR_RETRY;
#endif
	case -EIO:
		/* A device reset ended the call; the host holds nothing of
		 * this guest now, so the call may be made again. */
		return PVRSRV_ERROR_RETRY;
	case -ENODEV:
		return PVRSRV_ERROR_INVALID_DEVICE;
	case -EBUSY:
		return PVRSRV_ERROR_RESOURCE_UNAVAILABLE;
	case -ENOMEM:
		return PVRSRV_ERROR_OUT_OF_MEMORY;
	default:
		/* -EPROTO (a malformed answer, logged by virtio_pvz) and
		 * anything unexpected. */
		return PVRSRV_ERROR_INTERNAL_ERROR;
	}
}

static const char *VirtioStatusName(int iResult)
{
	static const char *const apszStatus[] = {
		"OK", "NOT_IMPLEMENTED", "INVALID_PARAMS", "OUT_OF_MEMORY", "INVALID_OSID",
		"ALREADY_EXISTS", "NOT_FOUND", "ADDRESS_OUT_OF_RANGE", "MALFORMED_REQUEST",
		"VM_OFFLINE", "INVALID_PVZ_CONFIG",
	};

	if (iResult >= 0 && iResult < (int)ARRAY_SIZE(apszStatus))
		return apszStatus[iResult];
	return iResult < 0 ? "transport error" : "unknown status";
}

/* Map and log: a host refusal as a warning, a transport failure as an error. */
static PVRSRV_ERROR VirtioResult(const char *pszCall, int iResult)
{
	PVRSRV_ERROR eError = VirtioToPvrsrvError(iResult);

	if (iResult < 0)
		pr_err(VV_PREFIX "%s: transport error %d -> PVRSRV_ERROR %d\n", pszCall, iResult, eError);
	else if (iResult == PVZ_NOT_IMPLEMENTED)
		/* The calls differ between DDK ABIs (1.13+ have only Map and
		 * Unmap): the usual cause is a host of another ABI. */
		pr_warn_ratelimited(VV_PREFIX "%s: host answered NOT_IMPLEMENTED (%d) -> PVRSRV_ERROR %d: does the host speak this DDK's ABI (VMM_VIRTIO_DDK_ABI %d; vhost-user-pvz --ddk-abi)?\n",
				    pszCall, iResult, eError, VMM_VIRTIO_DDK_ABI);
	else if (iResult > 0)
		pr_warn_ratelimited(VV_PREFIX "%s: host answered %s (%d) -> PVRSRV_ERROR %d\n", pszCall,
				    VirtioStatusName(iResult), iResult, eError);
	return eError;
}

/* ---- the device ---- */

/* Claim the configured device if not yet done. Caller holds gsVirtioLock. */
static PVRSRV_ERROR VirtioDeviceLocked(struct virtio_pvz **ppsDev)
{
	struct virtio_pvz *psDev = gpsVirtioDev;

	if (!psDev) {
		psDev = virtio_pvz_get(vmm_virtio_device, vmm_virtio_wait_ms);
		if (IS_ERR(psDev)) {
			long lErr = PTR_ERR(psDev);

			pr_err(VV_PREFIX "no virtio-pvz device %u within %u ms (error %ld)\n", vmm_virtio_device,
			       vmm_virtio_wait_ms, lErr);
			if (lErr == -ETIMEDOUT)
				return PVRSRV_ERROR_NO_DEVICENODE_FOUND;
			return VirtioToPvrsrvError((int)lErr);
		}
		gpsVirtioDev = psDev;
	}
	*ppsDev = psDev;
	return PVRSRV_OK;
}

static void VirtioReleaseDeviceLocked(void)
{
	if (gpsVirtioDev) {
		virtio_pvz_set_event_handler(gpsVirtioDev, NULL, NULL);
		gsVirtioLISR.pfnLISR = NULL;
		virtio_pvz_put(gpsVirtioDev);
		gpsVirtioDev = NULL;
	}
}

struct virtio_pvz *VMMVirtioDevice(void)
{
	return READ_ONCE(gpsVirtioDev);
}

static void VirtioEvent(void *pvData, const struct pvz_event *psEvent)
{
	PVR_UNREFERENCED_PARAMETER(psEvent);
	if (gsVirtioLISR.pfnLISR)
		gsVirtioLISR.pfnLISR(gsVirtioLISR.pvData);
}

PVRSRV_ERROR VMMVirtioInstallLISR(PFN_LISR pfnLISR, void *pvData)
{
	struct virtio_pvz *psDev;
	PVRSRV_ERROR eError;

	if (!pfnLISR)
		return PVRSRV_ERROR_INVALID_PARAMS;
	mutex_lock(&gsVirtioLock);
	if (gsVirtioLISR.pfnLISR) {
		eError = PVRSRV_ERROR_RESOURCE_UNAVAILABLE;
		goto out;
	}
	eError = VirtioDeviceLocked(&psDev);
	if (eError != PVRSRV_OK)
		goto out;
	gsVirtioLISR.pfnLISR = pfnLISR;
	gsVirtioLISR.pvData = pvData;
	virtio_pvz_set_event_handler(psDev, VirtioEvent, NULL);
out:
	mutex_unlock(&gsVirtioLock);
	return eError;
}

void VMMVirtioUninstallLISR(void)
{
	mutex_lock(&gsVirtioLock);
	if (gpsVirtioDev)
		virtio_pvz_set_event_handler(gpsVirtioDev, NULL, NULL);
	gsVirtioLISR.pfnLISR = NULL;
	gsVirtioLISR.pvData = NULL;
	mutex_unlock(&gsVirtioLock);
}

/* ---- Map and Unmap: every ABI ---- */

static PVRSRV_ERROR VirtioMap(IMG_UINT32 ui32FuncID, IMG_UINT32 ui32DevID, IMG_UINT64 ui64Size,
			      IMG_UINT64 ui64PAddr)
{
	struct virtio_pvz *psDev;
	PVRSRV_ERROR eError;

	/* As the DDK's own client refuses them, before any hypercall. */
	if (!ui64Size || !ui64PAddr)
		return PVRSRV_ERROR_INVALID_PARAMS;
	mutex_lock(&gsVirtioLock);
	eError = VirtioDeviceLocked(&psDev);
	if (eError == PVRSRV_OK)
		eError = VirtioResult("MapDevPhysHeap",
				      virtio_pvz_map_dev_phys_heap(psDev, ui32FuncID, ui32DevID, ui64Size,
								   ui64PAddr));
	mutex_unlock(&gsVirtioLock);
	return eError;
}

static PVRSRV_ERROR VirtioUnmap(IMG_UINT32 ui32FuncID, IMG_UINT32 ui32DevID)
{
	struct virtio_pvz_info sInfo;
	struct virtio_pvz *psDev;
	PVRSRV_ERROR eError;

	mutex_lock(&gsVirtioLock);
	eError = VirtioDeviceLocked(&psDev);
	if (eError == PVRSRV_OK) {
		eError = VirtioResult("UnmapDevPhysHeap",
				      virtio_pvz_unmap_dev_phys_heap(psDev, ui32FuncID, ui32DevID));
		/* The DDK frees the heap after this whatever it returns. */
		if (!virtio_pvz_get_info(psDev, &sInfo) && (sInfo.status & PVZ_STATUS_FW_HEAP_MAPPED))
			pr_err(VV_PREFIX "the host still maps %#llx+%#llx as firmware heap after UnmapDevPhysHeap: freeing it now lets the host write freed memory\n",
			       sInfo.fw_heap_ipa, sInfo.fw_heap_size);
	}
	mutex_unlock(&gsVirtioLock);
	return eError;
}

#if VMM_VIRTIO_DDK_ABI == 110
/* ---- DDK 1.10: the six host calls and the heap policy ---- */

/* The policy answers (sConfigFuncTab), fixed by VMMCreatePvzConnection.
 * Until then, and in host or native mode: the DDK stub's answer (GUEST,
 * 0/0 for every heap). */
static struct {
	PVRSRV_DEVICE_PHYS_HEAP_ORIGIN aeOrigin[PVRSRV_DEVICE_PHYS_HEAP_LAST];
	IMG_UINT64 aui64Size[PVRSRV_DEVICE_PHYS_HEAP_LAST];
	IMG_UINT64 aui64Addr[PVRSRV_DEVICE_PHYS_HEAP_LAST];
	/* host heaps this type created at connection time, and the answer */
	bool bHostHeaps;
	IMG_UINT32 ui32HeapType;
	IMG_UINT64 ui64FwSize, ui64FwAddr, ui64GpuSize, ui64GpuAddr;
} gsVirtioPolicy;

static void VirtioPolicyStub(void)
{
	int i;

	for (i = 0; i < PVRSRV_DEVICE_PHYS_HEAP_LAST; i++) {
		gsVirtioPolicy.aeOrigin[i] = PVRSRV_DEVICE_PHYS_HEAP_ORIGIN_GUEST;
		gsVirtioPolicy.aui64Size[i] = 0;
		gsVirtioPolicy.aui64Addr[i] = 0;
	}
	gsVirtioPolicy.bHostHeaps = false;
}

static PVRSRV_ERROR VirtioCreateDevConfig(IMG_UINT32 ui32FuncID, IMG_UINT32 ui32DevID, IMG_UINT32 *pui32IRQ,
					  IMG_UINT32 *pui32RegsSize, IMG_UINT64 *pui64RegsPBase)
{
	struct virtio_pvz *psDev;
	PVRSRV_ERROR eError;
	u32 ui32IRQ, ui32RegsSize;
	u64 ui64RegsPBase;

	if (!pui32IRQ || !pui32RegsSize || !pui64RegsPBase)
		return PVRSRV_ERROR_INVALID_PARAMS;
	mutex_lock(&gsVirtioLock);
	eError = VirtioDeviceLocked(&psDev);
	if (eError == PVRSRV_OK) {
		eError = VirtioResult("CreateDevConfig",
				      virtio_pvz_create_dev_config(psDev, ui32FuncID, ui32DevID, &ui32IRQ,
								   &ui32RegsSize, &ui64RegsPBase));
		if (eError == PVRSRV_OK) {
			*pui32IRQ = ui32IRQ;
			*pui32RegsSize = ui32RegsSize;
			*pui64RegsPBase = ui64RegsPBase;
		}
	}
	mutex_unlock(&gsVirtioLock);
	return eError;
}

static PVRSRV_ERROR VirtioDestroyDevConfig(IMG_UINT32 ui32FuncID, IMG_UINT32 ui32DevID)
{
	struct virtio_pvz *psDev;
	PVRSRV_ERROR eError;

	mutex_lock(&gsVirtioLock);
	eError = VirtioDeviceLocked(&psDev);
	if (eError == PVRSRV_OK)
		eError = VirtioResult("DestroyDevConfig",
				      virtio_pvz_destroy_dev_config(psDev, ui32FuncID, ui32DevID));
	mutex_unlock(&gsVirtioLock);
	return eError;
}

/* CREATE_DEV_PHYS_HEAPS on the wire; the firmware heap's answer is 0/0
 * when its origin is the guest, as the DDK host answers. Caller holds
 * gsVirtioLock. */
static PVRSRV_ERROR VirtioCreateHostHeapsLocked(struct virtio_pvz *psDev, IMG_UINT32 ui32FuncID,
						IMG_UINT32 ui32DevID)
{
	u32 ui32Type;
	u64 ui64FwSize, ui64FwAddr, ui64GpuSize, ui64GpuAddr;
	PVRSRV_ERROR eError;

	eError = VirtioResult("CreateDevPhysHeaps",
			      virtio_pvz_create_dev_phys_heaps(psDev, ui32FuncID, ui32DevID, &ui32Type,
							       &ui64FwSize, &ui64FwAddr, &ui64GpuSize,
							       &ui64GpuAddr));
	if (eError != PVRSRV_OK)
		return eError;
	if (gsVirtioPolicy.aeOrigin[PVRSRV_DEVICE_PHYS_HEAP_FW_LOCAL] == PVRSRV_DEVICE_PHYS_HEAP_ORIGIN_GUEST)
		ui64FwSize = ui64FwAddr = 0;
	if (gsVirtioPolicy.aeOrigin[PVRSRV_DEVICE_PHYS_HEAP_GPU_LOCAL] == PVRSRV_DEVICE_PHYS_HEAP_ORIGIN_GUEST)
		ui64GpuSize = ui64GpuAddr = 0;
	gsVirtioPolicy.bHostHeaps = true;
	gsVirtioPolicy.ui32HeapType = ui32Type;
	gsVirtioPolicy.ui64FwSize = ui64FwSize;
	gsVirtioPolicy.ui64FwAddr = ui64FwAddr;
	gsVirtioPolicy.ui64GpuSize = ui64GpuSize;
	gsVirtioPolicy.ui64GpuAddr = ui64GpuAddr;
	return PVRSRV_OK;
}

/*
 * The DDK calls this only when its firmware heap's origin is the host; the
 * heaps exist already (VMMCreatePvzConnection made them to answer the
 * policy), so this returns what they are.
 */
static PVRSRV_ERROR VirtioCreateDevPhysHeaps(IMG_UINT32 ui32FuncID, IMG_UINT32 ui32DevID, IMG_UINT32 *peType,
					     IMG_UINT64 *pui64FwSize, IMG_UINT64 *pui64FwPAddr,
					     IMG_UINT64 *pui64GpuSize, IMG_UINT64 *pui64GpuPAddr)
{
	struct virtio_pvz *psDev;
	PVRSRV_ERROR eError;

	if (!peType || !pui64FwSize || !pui64FwPAddr || !pui64GpuSize || !pui64GpuPAddr)
		return PVRSRV_ERROR_INVALID_PARAMS;
	mutex_lock(&gsVirtioLock);
	eError = VirtioDeviceLocked(&psDev);
	if (eError == PVRSRV_OK && !gsVirtioPolicy.bHostHeaps)
		eError = VirtioCreateHostHeapsLocked(psDev, ui32FuncID, ui32DevID);
	if (eError == PVRSRV_OK) {
		*peType = gsVirtioPolicy.ui32HeapType;
		*pui64FwSize = gsVirtioPolicy.ui64FwSize;
		*pui64FwPAddr = gsVirtioPolicy.ui64FwAddr;
		*pui64GpuSize = gsVirtioPolicy.ui64GpuSize;
		*pui64GpuPAddr = gsVirtioPolicy.ui64GpuAddr;
	}
	mutex_unlock(&gsVirtioLock);
	return eError;
}

/* Caller holds gsVirtioLock. */
static PVRSRV_ERROR VirtioDestroyHostHeapsLocked(struct virtio_pvz *psDev, IMG_UINT32 ui32FuncID,
						 IMG_UINT32 ui32DevID)
{
	int iResult = virtio_pvz_destroy_dev_phys_heaps(psDev, ui32FuncID, ui32DevID);

	if (iResult == PVZ_OK || iResult == PVZ_NOT_FOUND || iResult == -ENODEV)
		gsVirtioPolicy.bHostHeaps = false;
	return VirtioResult("DestroyDevPhysHeaps", iResult);
}

static PVRSRV_ERROR VirtioDestroyDevPhysHeaps(IMG_UINT32 ui32FuncID, IMG_UINT32 ui32DevID)
{
	struct virtio_pvz *psDev;
	PVRSRV_ERROR eError;

	mutex_lock(&gsVirtioLock);
	eError = VirtioDeviceLocked(&psDev);
	if (eError == PVRSRV_OK)
		eError = VirtioDestroyHostHeapsLocked(psDev, ui32FuncID, ui32DevID);
	mutex_unlock(&gsVirtioLock);
	return eError;
}

static PVRSRV_ERROR VirtioMapDevPhysHeap(IMG_UINT32 ui32FuncID, IMG_UINT32 ui32DevID, IMG_UINT64 ui64Size,
					 IMG_UINT64 ui64PAddr)
{
	return VirtioMap(ui32FuncID, ui32DevID, ui64Size, ui64PAddr);
}

static PVRSRV_ERROR VirtioUnmapDevPhysHeap(IMG_UINT32 ui32FuncID, IMG_UINT32 ui32DevID)
{
	return VirtioUnmap(ui32FuncID, ui32DevID);
}

static PVRSRV_ERROR VirtioGetDevPhysHeapOrigin(PVRSRV_DEVICE_CONFIG *psDevConfig, PVRSRV_DEVICE_PHYS_HEAP eHeap,
					       PVRSRV_DEVICE_PHYS_HEAP_ORIGIN *peOrigin)
{
	PVR_UNREFERENCED_PARAMETER(psDevConfig);
	if (!peOrigin || (unsigned int)eHeap >= PVRSRV_DEVICE_PHYS_HEAP_LAST)
		return PVRSRV_ERROR_INVALID_PARAMS;
	*peOrigin = gsVirtioPolicy.aeOrigin[eHeap];
	return PVRSRV_OK;
}

static PVRSRV_ERROR VirtioGetDevPhysHeapAddrSize(PVRSRV_DEVICE_CONFIG *psDevConfig, PVRSRV_DEVICE_PHYS_HEAP eHeap,
						 IMG_UINT64 *pui64Size, IMG_UINT64 *pui64Addr)
{
	PVR_UNREFERENCED_PARAMETER(psDevConfig);
	if (!pui64Size || !pui64Addr || (unsigned int)eHeap >= PVRSRV_DEVICE_PHYS_HEAP_LAST)
		return PVRSRV_ERROR_INVALID_PARAMS;
	*pui64Size = gsVirtioPolicy.aui64Size[eHeap];
	*pui64Addr = gsVirtioPolicy.aui64Addr[eHeap];
	return PVRSRV_OK;
}

/* One heap's origin from the host (GET_DEV_PHYS_HEAP_ORIGIN). */
static PVRSRV_ERROR VirtioAskOrigin(struct virtio_pvz *psDev, PVRSRV_DEVICE_PHYS_HEAP eHeap,
				    PVRSRV_DEVICE_PHYS_HEAP_ORIGIN *peOrigin)
{
	u32 ui32Origin = 0;
	PVRSRV_ERROR eError = VirtioResult("GetDevPhysHeapOrigin",
					   virtio_pvz_get_dev_phys_heap_origin(psDev, eHeap, &ui32Origin));

	if (eError == PVRSRV_OK)
		*peOrigin = ui32Origin == PVZ_ORIGIN_HOST ? PVRSRV_DEVICE_PHYS_HEAP_ORIGIN_HOST :
							   PVRSRV_DEVICE_PHYS_HEAP_ORIGIN_GUEST;
	return eError;
}

/*
 * Learn the host's heap policy and fix this guest's answers:
 *  - firmware heap, guest origin: 0 / RGX_FIRMWARE_RAW_HEAP_SIZE (the DDK
 *    allocates it as a DMA heap and maps it); the host must want exactly
 *    that size, or every Map would be refused later;
 *  - any heap of host origin: the heaps are created now and the answer is
 *    their address and size (a 1.10 guest asks the policy before it would
 *    call CreateDevPhysHeaps, and a GPU heap is never created by it);
 *  - GPU heap, guest origin: the host's convention (0/0 UMA, 0/size DMA);
 *  - CPU_LOCAL, EXTERNAL: the guest's own memory, 0/0.
 * Caller holds gsVirtioLock and has claimed the device.
 */
static PVRSRV_ERROR VirtioLoadPolicyLocked(struct virtio_pvz *psDev)
{
	PVRSRV_DEVICE_PHYS_HEAP_ORIGIN eFw = PVRSRV_DEVICE_PHYS_HEAP_ORIGIN_GUEST, eGpu = eFw;
	u64 ui64Size = 0, ui64Addr = 0;
	PVRSRV_ERROR eError;

	VirtioPolicyStub();
	eError = VirtioAskOrigin(psDev, PVRSRV_DEVICE_PHYS_HEAP_FW_LOCAL, &eFw);
	if (eError == PVRSRV_OK)
		eError = VirtioAskOrigin(psDev, PVRSRV_DEVICE_PHYS_HEAP_GPU_LOCAL, &eGpu);
	if (eError != PVRSRV_OK)
		return eError;
	gsVirtioPolicy.aeOrigin[PVRSRV_DEVICE_PHYS_HEAP_FW_LOCAL] = eFw;
	gsVirtioPolicy.aeOrigin[PVRSRV_DEVICE_PHYS_HEAP_FW_GUEST] = eFw;
	gsVirtioPolicy.aeOrigin[PVRSRV_DEVICE_PHYS_HEAP_GPU_LOCAL] = eGpu;

	if (eFw == PVRSRV_DEVICE_PHYS_HEAP_ORIGIN_GUEST) {
		eError = VirtioResult("GetDevPhysHeapAddrSize(FW_LOCAL)",
				      virtio_pvz_get_dev_phys_heap_addr_size(psDev, PVRSRV_DEVICE_PHYS_HEAP_FW_LOCAL,
									     &ui64Size, &ui64Addr));
		if (eError != PVRSRV_OK)
			return eError;
		if (ui64Size && ui64Size != RGX_FIRMWARE_RAW_HEAP_SIZE) {
			pr_err(VV_PREFIX "the host's firmware heap is %llu bytes, this DDK's RGX_FIRMWARE_RAW_HEAP_SIZE is %u (RGX_FW_HEAP_SHIFT %u): build with the host's size or start the host with --fw-heap-size %u\n",
			       ui64Size, (unsigned int)RGX_FIRMWARE_RAW_HEAP_SIZE, (unsigned int)RGX_FIRMWARE_HEAP_SHIFT,
			       (unsigned int)RGX_FIRMWARE_RAW_HEAP_SIZE);
			return PVRSRV_ERROR_INVALID_PVZ_CONFIG;
		}
		gsVirtioPolicy.aui64Size[PVRSRV_DEVICE_PHYS_HEAP_FW_LOCAL] = RGX_FIRMWARE_RAW_HEAP_SIZE;
		gsVirtioPolicy.aui64Size[PVRSRV_DEVICE_PHYS_HEAP_FW_GUEST] = RGX_FIRMWARE_RAW_HEAP_SIZE;
	}
	if (eFw == PVRSRV_DEVICE_PHYS_HEAP_ORIGIN_HOST || eGpu == PVRSRV_DEVICE_PHYS_HEAP_ORIGIN_HOST) {
		eError = VirtioCreateHostHeapsLocked(psDev, PVZ_BRIDGE_CREATEDEVICEPHYSHEAPS, 0);
		if (eError == PVRSRV_ERROR_ALREADY_EXISTS) {
			/* A DDK before this one left them: start clean. */
			VirtioDestroyHostHeapsLocked(psDev, PVZ_BRIDGE_DESTROYDEVICEPHYSHEAPS, 0);
			eError = VirtioCreateHostHeapsLocked(psDev, PVZ_BRIDGE_CREATEDEVICEPHYSHEAPS, 0);
		}
		if (eError != PVRSRV_OK)
			return eError;
	}
	if (eFw == PVRSRV_DEVICE_PHYS_HEAP_ORIGIN_HOST) {
		if (!gsVirtioPolicy.ui64FwAddr || gsVirtioPolicy.ui64FwSize != RGX_FIRMWARE_RAW_HEAP_SIZE) {
			pr_err(VV_PREFIX "the host's firmware heap %#llx+%#llx is not a %u-byte heap (RGX_FIRMWARE_RAW_HEAP_SIZE)\n",
			       gsVirtioPolicy.ui64FwAddr, gsVirtioPolicy.ui64FwSize,
			       (unsigned int)RGX_FIRMWARE_RAW_HEAP_SIZE);
			VirtioDestroyHostHeapsLocked(psDev, PVZ_BRIDGE_DESTROYDEVICEPHYSHEAPS, 0);
			return PVRSRV_ERROR_INVALID_PVZ_CONFIG;
		}
		gsVirtioPolicy.aui64Size[PVRSRV_DEVICE_PHYS_HEAP_FW_LOCAL] = gsVirtioPolicy.ui64FwSize;
		gsVirtioPolicy.aui64Addr[PVRSRV_DEVICE_PHYS_HEAP_FW_LOCAL] = gsVirtioPolicy.ui64FwAddr;
		gsVirtioPolicy.aui64Size[PVRSRV_DEVICE_PHYS_HEAP_FW_GUEST] = gsVirtioPolicy.ui64FwSize;
		gsVirtioPolicy.aui64Addr[PVRSRV_DEVICE_PHYS_HEAP_FW_GUEST] = gsVirtioPolicy.ui64FwAddr;
	}
	if (eGpu == PVRSRV_DEVICE_PHYS_HEAP_ORIGIN_HOST) {
		gsVirtioPolicy.aui64Size[PVRSRV_DEVICE_PHYS_HEAP_GPU_LOCAL] = gsVirtioPolicy.ui64GpuSize;
		gsVirtioPolicy.aui64Addr[PVRSRV_DEVICE_PHYS_HEAP_GPU_LOCAL] = gsVirtioPolicy.ui64GpuAddr;
	} else {
		eError = VirtioResult("GetDevPhysHeapAddrSize(GPU_LOCAL)",
				      virtio_pvz_get_dev_phys_heap_addr_size(psDev, PVRSRV_DEVICE_PHYS_HEAP_GPU_LOCAL,
									     &ui64Size, &ui64Addr));
		if (eError != PVRSRV_OK) {
			if (gsVirtioPolicy.bHostHeaps)
				VirtioDestroyHostHeapsLocked(psDev, PVZ_BRIDGE_DESTROYDEVICEPHYSHEAPS, 0);
			return eError;
		}
		gsVirtioPolicy.aui64Size[PVRSRV_DEVICE_PHYS_HEAP_GPU_LOCAL] = ui64Size;
		gsVirtioPolicy.aui64Addr[PVRSRV_DEVICE_PHYS_HEAP_GPU_LOCAL] = ui64Addr;
	}
	pr_info(VV_PREFIX "heap policy: FW_LOCAL %s %#llx+%#llx, GPU_LOCAL %s %#llx+%#llx\n",
		eFw == PVRSRV_DEVICE_PHYS_HEAP_ORIGIN_HOST ? "host" : "guest",
		gsVirtioPolicy.aui64Addr[PVRSRV_DEVICE_PHYS_HEAP_FW_LOCAL],
		gsVirtioPolicy.aui64Size[PVRSRV_DEVICE_PHYS_HEAP_FW_LOCAL],
		eGpu == PVRSRV_DEVICE_PHYS_HEAP_ORIGIN_HOST ? "host" : "guest",
		gsVirtioPolicy.aui64Addr[PVRSRV_DEVICE_PHYS_HEAP_GPU_LOCAL],
		gsVirtioPolicy.aui64Size[PVRSRV_DEVICE_PHYS_HEAP_GPU_LOCAL]);
	return PVRSRV_OK;
}

static VMM_PVZ_CONNECTION gsVirtioConnection = {
	.sHostFuncTab = {
		.pfnCreateDevConfig = VirtioCreateDevConfig,
		.pfnDestroyDevConfig = VirtioDestroyDevConfig,
		.pfnCreateDevPhysHeaps = VirtioCreateDevPhysHeaps,
		.pfnDestroyDevPhysHeaps = VirtioDestroyDevPhysHeaps,
		.pfnMapDevPhysHeap = VirtioMapDevPhysHeap,
		.pfnUnmapDevPhysHeap = VirtioUnmapDevPhysHeap,
	},
	.sGuestFuncTab = {
		.pfnCreateDevConfig = PvzServerCreateDevConfig,
		.pfnDestroyDevConfig = PvzServerDestroyDevConfig,
		.pfnCreateDevPhysHeaps = PvzServerCreateDevPhysHeaps,
		.pfnDestroyDevPhysHeaps = PvzServerDestroyDevPhysHeaps,
		.pfnMapDevPhysHeap = PvzServerMapDevPhysHeap,
		.pfnUnmapDevPhysHeap = PvzServerUnmapDevPhysHeap,
	},
	.sConfigFuncTab = {
		.pfnGetDevPhysHeapOrigin = VirtioGetDevPhysHeapOrigin,
		.pfnGetDevPhysHeapAddrSize = VirtioGetDevPhysHeapAddrSize,
	},
	.sVmmFuncTab = {
		.pfnOnVmOnline = PvzServerOnVmOnline,
		.pfnOnVmOffline = PvzServerOnVmOffline,
		.pfnVMMConfigure = PvzServerVMMConfigure,
	},
};

/*
 * 1.10 honours a failure here (device creation fails), so a missing device
 * or a policy this DDK cannot use is reported now, with its reason logged.
 */
PVRSRV_ERROR VMMCreatePvzConnection(VMM_PVZ_CONNECTION **psPvzConnection)
{
	struct virtio_pvz *psDev;
	PVRSRV_ERROR eError = PVRSRV_OK;

	if (!psPvzConnection)
		return PVRSRV_ERROR_INVALID_PARAMS;
	*psPvzConnection = &gsVirtioConnection;
	mutex_lock(&gsVirtioLock);
	if (!PVRSRV_VZ_MODE_IS(DRIVER_MODE_GUEST)) {
		/* Host or native: nothing to connect to (the host is the VM
		 * manager's daemon); the stub's policy. */
		if (!gui32VirtioConnections)
			VirtioPolicyStub();
		gui32VirtioConnections++;
		goto out;
	}
	if (gui32VirtioConnections) {
		gui32VirtioConnections++;
		goto out;
	}
	eError = VirtioDeviceLocked(&psDev);
	if (eError == PVRSRV_OK)
		eError = VirtioLoadPolicyLocked(psDev);
	if (eError == PVRSRV_OK)
		gui32VirtioConnections = 1;
	else
		VirtioReleaseDeviceLocked();
out:
	mutex_unlock(&gsVirtioLock);
	return eError;
}

void VMMDestroyPvzConnection(VMM_PVZ_CONNECTION *psPvzConnection)
{
	if (psPvzConnection != &gsVirtioConnection) {
		pr_err(VV_PREFIX "VMMDestroyPvzConnection(%p): not this type's connection\n", psPvzConnection);
		return;
	}
	mutex_lock(&gsVirtioLock);
	if (!gui32VirtioConnections || --gui32VirtioConnections)
		goto out;
	if (gpsVirtioDev && gsVirtioPolicy.bHostHeaps)
		VirtioDestroyHostHeapsLocked(gpsVirtioDev, PVZ_BRIDGE_DESTROYDEVICEPHYSHEAPS, 0);
	VirtioReleaseDeviceLocked();
	VirtioPolicyStub();
out:
	mutex_unlock(&gsVirtioLock);
}

#else
/* ---- DDK 1.13 and later: the client table is Map and Unmap ---- */

#if VMM_VIRTIO_DDK_ABI <= 115
static PVRSRV_ERROR VirtioMapDevPhysHeap(IMG_UINT32 ui32FuncID, IMG_UINT32 ui32DevID, IMG_UINT64 ui64Size,
					 IMG_UINT64 ui64PAddr)
{
	return VirtioMap(ui32FuncID, ui32DevID, ui64Size, ui64PAddr);
}

static PVRSRV_ERROR VirtioUnmapDevPhysHeap(IMG_UINT32 ui32FuncID, IMG_UINT32 ui32DevID)
{
	return VirtioUnmap(ui32FuncID, ui32DevID);
}
#else
/* No FuncID or DevID from 1.18 on: the wire carries 0 for both. */
static PVRSRV_ERROR VirtioMapDevPhysHeap(IMG_UINT64 ui64Size, IMG_UINT64 ui64PAddr)
{
	return VirtioMap(0, 0, ui64Size, ui64PAddr);
}

static PVRSRV_ERROR VirtioUnmapDevPhysHeap(void)
{
	return VirtioUnmap(0, 0);
}
#endif

static VMM_PVZ_CONNECTION gsVirtioConnection = {
	.sClientFuncTab = {
		.pfnMapDevPhysHeap = VirtioMapDevPhysHeap,
		.pfnUnmapDevPhysHeap = VirtioUnmapDevPhysHeap,
	},
	.sServerFuncTab = {
		.pfnMapDevPhysHeap = PvzServerMapDevPhysHeap,
		.pfnUnmapDevPhysHeap = PvzServerUnmapDevPhysHeap,
	},
	.sVmmFuncTab = {
		.pfnOnVmOnline = PvzServerOnVmOnline,
		.pfnOnVmOffline = PvzServerOnVmOffline,
		.pfnVMMConfigure = PvzServerVMMConfigure,
	},
};

/*
 * 1.13 to 23.3 ignore this function's result and use whatever pointer it
 * stored: always store the table and return PVRSRV_OK. A device that is not
 * there yet is looked for again by the first Map, which reports it.
 */
PVRSRV_ERROR VMMCreatePvzConnection(VMM_PVZ_CONNECTION **psPvzConnection)
{
	struct virtio_pvz *psDev;

	if (!psPvzConnection)
		return PVRSRV_ERROR_INVALID_PARAMS;
	*psPvzConnection = &gsVirtioConnection;
	mutex_lock(&gsVirtioLock);
	gui32VirtioConnections++;
	if (PVRSRV_VZ_MODE_IS(GUEST) && VirtioDeviceLocked(&psDev) != PVRSRV_OK)
		pr_warn(VV_PREFIX "no device yet: MapDevPhysHeap will look again and report it\n");
	mutex_unlock(&gsVirtioLock);
	return PVRSRV_OK;
}

void VMMDestroyPvzConnection(VMM_PVZ_CONNECTION *psPvzConnection)
{
	if (psPvzConnection != &gsVirtioConnection) {
		pr_err(VV_PREFIX "VMMDestroyPvzConnection(%p): not this type's connection\n", psPvzConnection);
		return;
	}
	mutex_lock(&gsVirtioLock);
	if (gui32VirtioConnections && !--gui32VirtioConnections)
		VirtioReleaseDeviceLocked();
	mutex_unlock(&gsVirtioLock);
}
#endif
