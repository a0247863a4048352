/* SPDX-License-Identifier: MIT */
/* Stand-in for the DDK's services/system/include/syscommon.h: the LISR type. */
#ifndef PVZ_STANDIN_SYSCOMMON_H
#define PVZ_STANDIN_SYSCOMMON_H

#include "img_types.h"

typedef IMG_BOOL (*PFN_LISR)(void *pvData);

#endif
