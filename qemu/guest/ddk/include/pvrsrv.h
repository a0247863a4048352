/* SPDX-License-Identifier: MIT */
/*
 * Stand-in for the DDK's services/server/include/pvrsrv.h: the driver data's
 * mode and the mode macro (1.10 compares against DRIVER_MODE_x, 1.13+ pastes
 * the name), and in 1.10 the VMM_CONF_PARAM enum (1.13+ has it in vmm_impl.h).
 */
#ifndef PVZ_STANDIN_PVRSRV_H
#define PVZ_STANDIN_PVRSRV_H

#include "img_types.h"
#include "img_defs.h"
#include "pvrsrv_error.h"
#include "pvrsrv_device.h"
#if PVZ_TEST_DDK == 110
#include "vz_physheap.h"
#endif

typedef struct PVRSRV_DATA_TAG {
	PVRSRV_DRIVER_MODE eDriverMode;
} PVRSRV_DATA;

/* The DDK's; the self-test provides it. */
PVRSRV_DATA *PVRSRVGetPVRSRVData(void);

#if PVZ_TEST_DDK == 110
/* 1.10: a mode above 0 is a guest (the value doubles as its OSID). */
#define PVRSRV_VZ_MODE_IS(_expr) \
	((((IMG_INT)(_expr)) > 0 && ((IMG_INT)PVRSRVGetPVRSRVData()->eDriverMode) > 0) ? \
	 IMG_TRUE : ((_expr) == PVRSRVGetPVRSRVData()->eDriverMode))

typedef enum _VMM_CONF_PARAM_ {
	VMM_CONF_PRIO_OSID0 = 0,
	VMM_CONF_PRIO_OSID1 = 1,
	VMM_CONF_PRIO_OSID2 = 2,
	VMM_CONF_PRIO_OSID3 = 3,
	VMM_CONF_PRIO_OSID4 = 4,
	VMM_CONF_PRIO_OSID5 = 5,
	VMM_CONF_PRIO_OSID6 = 6,
	VMM_CONF_PRIO_OSID7 = 7,
	VMM_CONF_ISOL_THRES = 8,
	VMM_CONF_HCS_DEADLINE = 9
} VMM_CONF_PARAM;
#else
#define PVRSRV_VZ_MODE_IS(_expr) (DRIVER_MODE_##_expr == PVRSRVGetPVRSRVData()->eDriverMode)
#endif

#endif
