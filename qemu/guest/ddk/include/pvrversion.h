/* SPDX-License-Identifier: MIT */
/* Stand-in for the DDK's include/pvrversion.h: the version the other
 * stand-in headers imitate, from -DPVZ_TEST_DDK (110 = 1.10, 231 = 23.1). */
#ifndef PVZ_STANDIN_PVRVERSION_H
#define PVZ_STANDIN_PVRVERSION_H

#if !defined(PVZ_TEST_DDK)
#error "build with -DPVZ_TEST_DDK=110|113|115|118|231|232|233 (the DDK version to imitate)"
#endif
#if PVZ_TEST_DDK >= 200
#define PVRVERSION_MAJ (PVZ_TEST_DDK / 10)
#define PVRVERSION_MIN (PVZ_TEST_DDK % 10)
#else
#define PVRVERSION_MAJ (PVZ_TEST_DDK / 100)
#define PVRVERSION_MIN (PVZ_TEST_DDK % 100)
#endif
#define PVRVERSION_FAMILY "rogueddk"

#endif
