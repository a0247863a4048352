/* SPDX-License-Identifier: MIT */
/*
 * Register offsets in an OSID's 64 KiB register bank (spec section 9). The
 * authority is docs/registers.md; keep these in step with it.
 */
#ifndef PVZ_REGS_H
#define PVZ_REGS_H

#define PVZ_REG_CORE_ID             0x000  /* RO, PVZ_CORE_ID_V1 */
#define PVZ_REG_BVNC_LO             0x004
#define PVZ_REG_BVNC_HI             0x008
#define PVZ_REG_OSID                0x00C
#define PVZ_REG_FW_STATUS           0x010
#define PVZ_REG_IRQ_STATUS          0x014  /* W1C */
#define PVZ_REG_IRQ_ENABLE          0x018
#define PVZ_REG_SCRATCH             0x01C  /* RW, free for the guest */
#define PVZ_REG_FW_READ_OFFSET      0x020
#define PVZ_REG_FW_COMPLETED_SEQ_LO 0x024
#define PVZ_REG_FW_COMPLETED_SEQ_HI 0x028
#define PVZ_REG_CNT_CALLS           0x040
#define PVZ_REG_CNT_KICKS           0x044
#define PVZ_REG_CNT_COMMANDS        0x048
#define PVZ_REG_CNT_FAULTS          0x04C
#define PVZ_REG_CNT_EVENTS_RAISED   0x054

#define PVZ_CORE_ID_V1              0x505A0001u  /* "PZ", layout version 1 */
#define PVZ_FW_EVENT_KICK_DONE      0            /* firmware event code: kick served */
#define PVZ_VMM_EVENT_OFFLINE       1

#endif
