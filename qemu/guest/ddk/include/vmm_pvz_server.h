/* SPDX-License-Identifier: MIT */
/* Stand-in for the DDK's vmm_pvz_server.h: the host server's entry points a
 * VMM type puts in its connection table (per version). */
#ifndef PVZ_STANDIN_VMM_PVZ_SERVER_H
#define PVZ_STANDIN_VMM_PVZ_SERVER_H

#include "vmm_impl.h"

#if PVZ_TEST_DDK == 110
PVRSRV_ERROR PvzServerCreateDevConfig(IMG_UINT32 ui32OSID, IMG_UINT32 ui32FuncID, IMG_UINT32 ui32DevID,
				      IMG_UINT32 *pui32IRQ, IMG_UINT32 *pui32RegsSize,
				      IMG_UINT64 *pui64RegsCpuPBase);
PVRSRV_ERROR PvzServerDestroyDevConfig(IMG_UINT32 ui32OSID, IMG_UINT32 ui32FuncID, IMG_UINT32 ui32DevID);
PVRSRV_ERROR PvzServerCreateDevPhysHeaps(IMG_UINT32 ui32OSID, IMG_UINT32 ui32FuncID, IMG_UINT32 ui32DevID,
					 IMG_UINT32 *peType, IMG_UINT64 *pui64FwPhysHeapSize,
					 IMG_UINT64 *pui64FwPhysHeapAddr, IMG_UINT64 *pui64GpuPhysHeapSize,
					 IMG_UINT64 *pui64GpuPhysHeapAddr);
PVRSRV_ERROR PvzServerDestroyDevPhysHeaps(IMG_UINT32 ui32OSID, IMG_UINT32 ui32FuncID, IMG_UINT32 ui32DevID);
#endif
#if PVZ_TEST_DDK <= 115
PVRSRV_ERROR PvzServerMapDevPhysHeap(IMG_UINT32 ui32OSID, IMG_UINT32 ui32FuncID, IMG_UINT32 ui32DevID,
				     IMG_UINT64 ui64Size, IMG_UINT64 ui64PAddr);
PVRSRV_ERROR PvzServerUnmapDevPhysHeap(IMG_UINT32 ui32OSID, IMG_UINT32 ui32FuncID, IMG_UINT32 ui32DevID);
#if PVZ_TEST_DDK == 115
PVRSRV_ERROR PvzServerOnVmOnline(IMG_UINT32 ui32OSID);
#else
PVRSRV_ERROR PvzServerOnVmOnline(IMG_UINT32 ui32OSID, IMG_UINT32 ui32Priority);
#endif
PVRSRV_ERROR PvzServerOnVmOffline(IMG_UINT32 ui32OSID);
PVRSRV_ERROR PvzServerVMMConfigure(VMM_CONF_PARAM eVMMParamType, IMG_UINT32 ui32ParamValue);
#else
PVRSRV_ERROR PvzServerMapDevPhysHeap(IMG_UINT32 ui32DriverID, IMG_UINT32 ui32DevID, IMG_UINT64 ui64Size,
				     IMG_UINT64 ui64PAddr);
PVRSRV_ERROR PvzServerUnmapDevPhysHeap(IMG_UINT32 ui32DriverID, IMG_UINT32 ui32DevID);
PVRSRV_ERROR PvzServerOnVmOnline(IMG_UINT32 ui32DriverID, IMG_UINT32 ui32DevID);
PVRSRV_ERROR PvzServerOnVmOffline(IMG_UINT32 ui32DriverID, IMG_UINT32 ui32DevID);
PVRSRV_ERROR PvzServerVMMConfigure(VMM_CONF_PARAM eVMMParamType, IMG_UINT32 ui32ParamValue,
				   IMG_UINT32 ui32DevID);
#endif

#endif
