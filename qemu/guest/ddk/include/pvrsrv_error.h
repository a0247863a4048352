/* SPDX-License-Identifier: MIT */
/*
 * Stand-in for the DDK's include/pvrsrv_error.h: PVRSRV_ERROR is the position
 * of each name in that version's pvrsrv_errors.h (PVRSRV_OK = 0). Only the
 * names the VMM type and its self-test use; the values per version were
 * counted in the DDK copies (docs/ddk-integration.md, "Status mapping").
 * A name a version does not have is left undefined there, so code that uses
 * it fails to build for that version as it would in the real tree.
 */
#ifndef PVZ_STANDIN_PVRSRV_ERROR_H
#define PVZ_STANDIN_PVRSRV_ERROR_H

#include "pvrversion.h"

/* PVZ_E(1.10, 1.13, 1.15, 1.18, 23.x) */
#if PVZ_TEST_DDK == 110
#define PVZ_E(a, b, c, d, e) (a)
#elif PVZ_TEST_DDK == 113
#define PVZ_E(a, b, c, d, e) (b)
#elif PVZ_TEST_DDK == 115
#define PVZ_E(a, b, c, d, e) (c)
#elif PVZ_TEST_DDK == 118
#define PVZ_E(a, b, c, d, e) (d)
#elif PVZ_TEST_DDK >= 231 && PVZ_TEST_DDK <= 233
#define PVZ_E(a, b, c, d, e) (e)
#else
#error "no PVRSRV_ERROR values for this PVZ_TEST_DDK"
#endif

typedef enum PVRSRV_ERROR_TAG {
	PVRSRV_OK = 0,
	PVRSRV_ERROR_OUT_OF_MEMORY = 1,
	PVRSRV_ERROR_INVALID_PARAMS = 3,
	PVRSRV_ERROR_INIT_FAILURE = 4,
	PVRSRV_ERROR_INVALID_DEVICE = 6,
	PVRSRV_ERROR_BAD_MAPPING = 8,
	PVRSRV_ERROR_TIMEOUT = 9,
	PVRSRV_ERROR_NOT_IMPLEMENTED = 10,
	PVRSRV_ERROR_NOT_SUPPORTED = 20,
	PVRSRV_ERROR_RETRY = 25,
	PVRSRV_ERROR_INVALID_DEVINFO = PVZ_E(114, 115, 115, 115, 117),
	PVRSRV_ERROR_NO_DEVICENODE_FOUND = PVZ_E(189, 190, 190, 190, 193),
	PVRSRV_ERROR_INVALID_DEVICEID = PVZ_E(217, 218, 218, 218, 221),
	PVRSRV_ERROR_NOT_READY = PVZ_E(265, 266, 267, 267, 270),
	PVRSRV_ERROR_RESOURCE_UNAVAILABLE = PVZ_E(266, 267, 268, 268, 271),
	PVRSRV_ERROR_NOT_FOUND = PVZ_E(273, 274, 275, 275, 278),
	PVRSRV_ERROR_ALREADY_EXISTS = PVZ_E(289, 292, 293, 293, 296),
	PVRSRV_ERROR_INTERNAL_ERROR = PVZ_E(305, 309, 310, 310, 313),
	PVRSRV_ERROR_NOT_INITIALISED = PVZ_E(316, 320, 321, 321, 324),
	PVRSRV_ERROR_INVALID_PVZ_CONFIG = PVZ_E(331, 337, 338, 340, 344),
	PVRSRV_ERROR_INVALID_PVZ_OSID = PVZ_E(332, 341, 342, 344, 348),
#if PVZ_TEST_DDK == 110
	PVRSRV_ERROR_PVZ_OSID_IS_ONLINE = 333,
#endif
	PVRSRV_ERROR_PVZ_OSID_IS_OFFLINE = PVZ_E(334, 342, 343, 345, 349),
#if PVZ_TEST_DDK >= 113
	PVRSRV_ERROR_INTERRUPTED = PVZ_E(0, 344, 345, 347, 351),
#endif
#if PVZ_TEST_DDK >= 118
	PVRSRV_ERROR_OUT_OF_RANGE = PVZ_E(0, 0, 0, 366, 370),
#endif
	PVRSRV_ERROR_FORCE_I32 = 0x7fffffff
} PVRSRV_ERROR;

/* The DDK's own lookup (services/shared/common); the self-test provides it. */
const char *PVRSRVGetErrorString(PVRSRV_ERROR eError);

#endif
