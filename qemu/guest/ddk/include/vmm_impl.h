/* SPDX-License-Identifier: MIT */
/*
 * Stand-in for the DDK's vmm_impl.h: the VM manager connection table of each
 * DDK version, field by field with the prototypes of that version (the facts:
 * docs/ddk-integration.md, "Connection tables"). For 1.10 the project's
 * reference header is authoritative; scripts/build-guest-image compiles the
 * VMM type against it as well when it is present.
 */
#ifndef _VMM_IMPL_H_  /* the DDK header's own guard: whichever copy comes first wins */
#define _VMM_IMPL_H_

#include "pvrsrv.h"
#include "img_types.h"
#include "pvrsrv_error.h"

#if PVZ_TEST_DDK >= 113
/* In pvrsrv.h in 1.10, here from 1.13 on. */
typedef enum _VMM_CONF_PARAM_ {
#if PVZ_TEST_DDK < 231
	VMM_CONF_PRIO_OSID0 = 0,
	VMM_CONF_PRIO_OSID1 = 1,
	VMM_CONF_PRIO_OSID2 = 2,
	VMM_CONF_PRIO_OSID3 = 3,
	VMM_CONF_PRIO_OSID4 = 4,
	VMM_CONF_PRIO_OSID5 = 5,
	VMM_CONF_PRIO_OSID6 = 6,
	VMM_CONF_PRIO_OSID7 = 7,
#if PVZ_TEST_DDK == 113
	VMM_CONF_ISOL_THRES = 8,
	VMM_CONF_HCS_DEADLINE = 9
#else
	VMM_CONF_HCS_DEADLINE = 8
#endif
#else
	VMM_CONF_PRIO_DRV0 = 0,
	VMM_CONF_PRIO_DRV1 = 1,
	VMM_CONF_PRIO_DRV2 = 2,
	VMM_CONF_PRIO_DRV3 = 3,
	VMM_CONF_PRIO_DRV4 = 4,
	VMM_CONF_PRIO_DRV5 = 5,
	VMM_CONF_PRIO_DRV6 = 6,
	VMM_CONF_PRIO_DRV7 = 7,
	VMM_CONF_HCS_DEADLINE = 8,
	VMM_CONF_ISOLATION_GROUP_DRV0 = 9,
	VMM_CONF_ISOLATION_GROUP_DRV1 = 10,
	VMM_CONF_ISOLATION_GROUP_DRV2 = 11,
	VMM_CONF_ISOLATION_GROUP_DRV3 = 12,
	VMM_CONF_ISOLATION_GROUP_DRV4 = 13,
	VMM_CONF_ISOLATION_GROUP_DRV5 = 14,
	VMM_CONF_ISOLATION_GROUP_DRV6 = 15,
	VMM_CONF_ISOLATION_GROUP_DRV7 = 16,
#if PVZ_TEST_DDK >= 232
	VMM_CONF_TIME_SLICE_DRV0 = 17,
	VMM_CONF_TIME_SLICE_DRV1 = 18,
	VMM_CONF_TIME_SLICE_DRV2 = 19,
	VMM_CONF_TIME_SLICE_DRV3 = 20,
	VMM_CONF_TIME_SLICE_DRV4 = 21,
	VMM_CONF_TIME_SLICE_DRV5 = 22,
	VMM_CONF_TIME_SLICE_DRV6 = 23,
	VMM_CONF_TIME_SLICE_DRV7 = 24,
	VMM_CONF_TIME_SLICE_INTERVAL = 25,
	VMM_CONF_VZ_CONNECTION_COOLDOWN_PERIOD = 26,
#endif
#endif
} VMM_CONF_PARAM;
#endif

typedef struct _VMM_PVZ_CONNECTION_ {
#if PVZ_TEST_DDK == 110
	/* guest -> VM manager, implemented by the VMM type */
	struct {
		PVRSRV_ERROR (*pfnCreateDevConfig)(IMG_UINT32 ui32FuncID, IMG_UINT32 ui32DevID,
						   IMG_UINT32 *pui32IRQ, IMG_UINT32 *pui32RegsSize,
						   IMG_UINT64 *pui64RegsPBase);
		PVRSRV_ERROR (*pfnDestroyDevConfig)(IMG_UINT32 ui32FuncID, IMG_UINT32 ui32DevID);
		PVRSRV_ERROR (*pfnCreateDevPhysHeaps)(IMG_UINT32 ui32FuncID, IMG_UINT32 ui32DevID,
						      IMG_UINT32 *peType, IMG_UINT64 *pui64FwSize,
						      IMG_UINT64 *pui64FwPAddr, IMG_UINT64 *pui64GpuSize,
						      IMG_UINT64 *pui64GpuPAddr);
		PVRSRV_ERROR (*pfnDestroyDevPhysHeaps)(IMG_UINT32 ui32FuncID, IMG_UINT32 ui32DevID);
		PVRSRV_ERROR (*pfnMapDevPhysHeap)(IMG_UINT32 ui32FuncID, IMG_UINT32 ui32DevID,
						  IMG_UINT64 ui64Size, IMG_UINT64 ui64PAddr);
		PVRSRV_ERROR (*pfnUnmapDevPhysHeap)(IMG_UINT32 ui32FuncID, IMG_UINT32 ui32DevID);
	} sHostFuncTab;
	/* the host server's entries, OSID first */
	struct {
		PVRSRV_ERROR (*pfnCreateDevConfig)(IMG_UINT32 ui32OSID, IMG_UINT32 ui32FuncID,
						   IMG_UINT32 ui32DevID, IMG_UINT32 *pui32IRQ,
						   IMG_UINT32 *pui32RegsSize, IMG_UINT64 *pui64RegsPBase);
		PVRSRV_ERROR (*pfnDestroyDevConfig)(IMG_UINT32 ui32OSID, IMG_UINT32 ui32FuncID,
						    IMG_UINT32 ui32DevID);
		PVRSRV_ERROR (*pfnCreateDevPhysHeaps)(IMG_UINT32 ui32OSID, IMG_UINT32 ui32FuncID,
						      IMG_UINT32 ui32DevID, IMG_UINT32 *peType,
						      IMG_UINT64 *pui64FwSize, IMG_UINT64 *pui64FwPAddr,
						      IMG_UINT64 *pui64GpuSize, IMG_UINT64 *pui64GpuPAddr);
		PVRSRV_ERROR (*pfnDestroyDevPhysHeaps)(IMG_UINT32 ui32OSID, IMG_UINT32 ui32FuncID,
						       IMG_UINT32 ui32DevID);
		PVRSRV_ERROR (*pfnMapDevPhysHeap)(IMG_UINT32 ui32OSID, IMG_UINT32 ui32FuncID,
						  IMG_UINT32 ui32DevID, IMG_UINT64 ui64Size,
						  IMG_UINT64 ui64PAddr);
		PVRSRV_ERROR (*pfnUnmapDevPhysHeap)(IMG_UINT32 ui32OSID, IMG_UINT32 ui32FuncID,
						    IMG_UINT32 ui32DevID);
	} sGuestFuncTab;
	/* the heap policy, both sides */
	struct {
		PVRSRV_ERROR (*pfnGetDevPhysHeapOrigin)(PVRSRV_DEVICE_CONFIG *psDevConfig,
							PVRSRV_DEVICE_PHYS_HEAP eHeap,
							PVRSRV_DEVICE_PHYS_HEAP_ORIGIN *peOrigin);
		PVRSRV_ERROR (*pfnGetDevPhysHeapAddrSize)(PVRSRV_DEVICE_CONFIG *psDevConfig,
							  PVRSRV_DEVICE_PHYS_HEAP eHeap,
							  IMG_UINT64 *pui64Size, IMG_UINT64 *pui64Addr);
	} sConfigFuncTab;
	/* VM manager -> host */
	struct {
		PVRSRV_ERROR (*pfnOnVmOnline)(IMG_UINT32 ui32OSID, IMG_UINT32 ui32Priority);
		PVRSRV_ERROR (*pfnOnVmOffline)(IMG_UINT32 ui32OSID);
		PVRSRV_ERROR (*pfnVMMConfigure)(VMM_CONF_PARAM eVMMParamType, IMG_UINT32 ui32ParamValue);
	} sVmmFuncTab;
#elif PVZ_TEST_DDK == 113 || PVZ_TEST_DDK == 115
	struct {
		PVRSRV_ERROR (*pfnMapDevPhysHeap)(IMG_UINT32 ui32FuncID, IMG_UINT32 ui32DevID,
						  IMG_UINT64 ui64Size, IMG_UINT64 ui64PAddr);
		PVRSRV_ERROR (*pfnUnmapDevPhysHeap)(IMG_UINT32 ui32FuncID, IMG_UINT32 ui32DevID);
	} sClientFuncTab;
	struct {
		PVRSRV_ERROR (*pfnMapDevPhysHeap)(IMG_UINT32 ui32OSID, IMG_UINT32 ui32FuncID,
						  IMG_UINT32 ui32DevID, IMG_UINT64 ui64Size,
						  IMG_UINT64 ui64PAddr);
		PVRSRV_ERROR (*pfnUnmapDevPhysHeap)(IMG_UINT32 ui32OSID, IMG_UINT32 ui32FuncID,
						    IMG_UINT32 ui32DevID);
	} sServerFuncTab;
	struct {
#if PVZ_TEST_DDK == 113
		PVRSRV_ERROR (*pfnOnVmOnline)(IMG_UINT32 ui32OSID, IMG_UINT32 ui32Priority);
#else
		PVRSRV_ERROR (*pfnOnVmOnline)(IMG_UINT32 ui32OSID);
#endif
		PVRSRV_ERROR (*pfnOnVmOffline)(IMG_UINT32 ui32OSID);
		PVRSRV_ERROR (*pfnVMMConfigure)(VMM_CONF_PARAM eVMMParamType, IMG_UINT32 ui32ParamValue);
	} sVmmFuncTab;
#else
	/* 1.18 (OSID) and 23.x (DriverID): no FuncID; DevID on the host side */
	struct {
		PVRSRV_ERROR (*pfnMapDevPhysHeap)(IMG_UINT64 ui64Size, IMG_UINT64 ui64PAddr);
		PVRSRV_ERROR (*pfnUnmapDevPhysHeap)(void);
	} sClientFuncTab;
	struct {
		PVRSRV_ERROR (*pfnMapDevPhysHeap)(IMG_UINT32 ui32DriverID, IMG_UINT32 ui32DevID,
						  IMG_UINT64 ui64Size, IMG_UINT64 ui64PAddr);
		PVRSRV_ERROR (*pfnUnmapDevPhysHeap)(IMG_UINT32 ui32DriverID, IMG_UINT32 ui32DevID);
	} sServerFuncTab;
	struct {
		PVRSRV_ERROR (*pfnOnVmOnline)(IMG_UINT32 ui32DriverID, IMG_UINT32 ui32DevID);
		PVRSRV_ERROR (*pfnOnVmOffline)(IMG_UINT32 ui32DriverID, IMG_UINT32 ui32DevID);
		PVRSRV_ERROR (*pfnVMMConfigure)(VMM_CONF_PARAM eVMMParamType, IMG_UINT32 ui32ParamValue,
						IMG_UINT32 ui32DevID);
	} sVmmFuncTab;
#endif
} VMM_PVZ_CONNECTION;

PVRSRV_ERROR VMMCreatePvzConnection(VMM_PVZ_CONNECTION **psPvzConnection);
void VMMDestroyPvzConnection(VMM_PVZ_CONNECTION *psPvzConnection);

#endif
