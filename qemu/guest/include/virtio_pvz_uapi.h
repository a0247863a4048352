/* SPDX-License-Identifier: (GPL-2.0 WITH Linux-syscall-note) OR MIT */
/*
 * virtio-pvz guest user-space interface: /dev/pvz (one misc device per
 * virtio-pvz device; the second one is /dev/pvz1 and so on).
 *
 * Wire values (functions, statuses, heap ids, event types, ring layout) are
 * those of docs/spec virtio-pvz.md version 1; this header is shared by the
 * kernel module and the guest test programs so they cannot drift apart. Like
 * every Linux uapi header it uses <linux/types.h>, so it can be included
 * after any libc header.
 *
 * Privileges: the node is root-only (0600) by default. Ioctls that change
 * the device (create/destroy, the firmware heap, WRITE_REG, KICK, RAW) need
 * CAP_SYS_ADMIN at the time of the call; GET_CONFIG, READ_REG, the two heap
 * queries, read()/poll() of events and the read-only register mapping do not.
 * The firmware heap belongs to the driver: user space never names a physical
 * address to the device.
 *
 * Every call ioctl returns 0 when the device answered with a well-formed
 * response, whatever its PVZ status: the status is in hdr.status so that a
 * test can expect NOT_FOUND and so on. A negative errno means the transport
 * or the device's answer was wrong:
 *   ETIMEDOUT  no used buffer within the call timeout (module parameter)
 *   EPROTO     the response was malformed (length, echoed function or
 *              request_id, reserved field, status value, output fields that
 *              contradict config space); the kernel log says which byte
 *   EIO        the device needs a reset, or a reset ended the call (the
 *              driver resets and re-initialises the device by itself)
 *   ENODEV     the device was removed (the file stays open, every call fails)
 *   EPERM      the call needs CAP_SYS_ADMIN, or RAW named a heap function
 *   EINVAL     the ioctl argument itself was invalid
 * A call ioctl that fails once it got past its argument checks still writes
 * hdr.request_id (RAW: request_id), and nothing else: the id of the request
 * it put on hypercallq (ETIMEDOUT: it may still run; EIO; EINTR; EPROTO;
 * EBUSY from UNMAP_FW_HEAP after the device answered), so the call can be
 * found in the host's records, or 0 when no request reached the ring.
 * Errors before that (ENOTTY, EFAULT, EPERM, ENODEV, EBUSY for an in-kernel
 * client) write nothing: set request_id to 0 before the call. MAP_FW_HEAP
 * makes up to three calls (the heap's origin, its size, the MAP): the id is
 * the last one's.
 */
#ifndef VIRTIO_PVZ_UAPI_H
#define VIRTIO_PVZ_UAPI_H

#include <linux/types.h>
#include <linux/ioctl.h>

/* Provisional, not OASIS-assigned; the module parameter virtio_id binds
 * another ID as well. The one definition of the guest side's device ID. */
#define VIRTIO_ID_PVZ            55
#define VIRTIO_PVZ_MAGIC         0x315A5650u /* "PVZ1" */
#define VIRTIO_PVZ_VERSION       1
#define VIRTIO_PVZ_CONFIG_SIZE   64
#define VIRTIO_PVZ_REGS_SIZE     0x10000u

/* Device feature bits (spec section 2). */
#define VIRTIO_PVZ_F_HOST_HEAPS  0
#define VIRTIO_PVZ_F_FIRMWARE    1

/* config.status bits (spec section 4). */
#define PVZ_STATUS_ONLINE        (1u << 0)
#define PVZ_STATUS_FW_RUNNING    (1u << 1)
#define PVZ_STATUS_FW_HEAP_MAPPED (1u << 2)
#define PVZ_STATUS_DEV_CONFIG    (1u << 3)
#define PVZ_STATUS_KNOWN_BITS    0xFu

/* Functions (spec section 5). */
enum pvz_function {
	PVZ_FN_CREATE_DEV_CONFIG = 1,
	PVZ_FN_DESTROY_DEV_CONFIG = 2,
	PVZ_FN_CREATE_DEV_PHYS_HEAPS = 3,
	PVZ_FN_DESTROY_DEV_PHYS_HEAPS = 4,
	PVZ_FN_MAP_DEV_PHYS_HEAP = 5,
	PVZ_FN_UNMAP_DEV_PHYS_HEAP = 6,
	PVZ_FN_GET_DEV_PHYS_HEAP_ORIGIN = 7,
	PVZ_FN_GET_DEV_PHYS_HEAP_ADDR_SIZE = 8,
	PVZ_FN_READ_REG = 9,
	PVZ_FN_WRITE_REG = 10,
	PVZ_FN_MAX = 10,
};

/* Statuses (spec section 5.1). */
enum pvz_status {
	PVZ_OK = 0,
	PVZ_NOT_IMPLEMENTED = 1,
	PVZ_INVALID_PARAMS = 2,
	PVZ_OUT_OF_MEMORY = 3,
	PVZ_INVALID_OSID = 4,
	PVZ_ALREADY_EXISTS = 5,
	PVZ_NOT_FOUND = 6,
	PVZ_ADDRESS_OUT_OF_RANGE = 7,
	PVZ_MALFORMED_REQUEST = 8,
	PVZ_VM_OFFLINE = 9,
	PVZ_INVALID_PVZ_CONFIG = 10,
	PVZ_STATUS_MAX = 10,
};

/* PVRSRV_DEVICE_PHYS_HEAP, _ORIGIN and PHYS_HEAP_TYPE values. */
enum pvz_heap_id { PVZ_HEAP_GPU_LOCAL = 0, PVZ_HEAP_CPU_LOCAL = 1,
		PVZ_HEAP_FW_LOCAL = 2, PVZ_HEAP_FW_GUEST = 3,
		PVZ_HEAP_EXTERNAL = 4 };
enum pvz_origin { PVZ_ORIGIN_HOST = 0, PVZ_ORIGIN_GUEST = 1 };
enum pvz_heap_type { PVZ_HEAP_TYPE_UMA = 1, PVZ_HEAP_TYPE_LMA = 2,
		     PVZ_HEAP_TYPE_DMA = 3 };

/* Wire headers, little-endian (spec section 5). */
#define PVZ_REQ_HDR_SIZE   16
#define PVZ_RESP_HDR_SIZE  16
#define PVZ_RAW_MAX        256

/* eventq (spec section 6). */
#define PVZ_EVENT_FIRMWARE 1
#define PVZ_EVENT_VMM      2
#define PVZ_FW_FAULT_CODE  0xE0000001u
#define PVZ_IRQ_STATUS_FW  (1u << 0)
#define PVZ_IRQ_STATUS_VMM (1u << 1)

/* Firmware command ring in the first 4 KiB of the firmware heap (section 7). */
#define PVZ_RING_MAGIC      0x474E4952u /* "RING" */
#define PVZ_RING_HDR_SIZE   4096
#define PVZ_RING_OFF_MAGIC  0x000
#define PVZ_RING_OFF_SIZE   0x004
#define PVZ_RING_OFF_WRITE  0x008
#define PVZ_RING_OFF_READ   0x00C
#define PVZ_RING_OFF_SEQ    0x010
#define PVZ_CMD_SIZE        32
enum pvz_cmd_op { PVZ_OP_NOP = 0, PVZ_OP_FENCE = 1, PVZ_OP_TIMESTAMP = 2,
		  PVZ_OP_IRQ = 3 };

struct pvz_cmd {
	__u32 op;
	__u32 flags;
	__u64 seq;
	__u64 arg0;
	__u64 arg1;
};

/* One event as read() returns it: the 16 wire bytes, host-endian. */
struct pvz_event {
	__u32 type;
	__u32 code;
	__u64 value;
};

/* GET_CONFIG: config space as last read and validated, plus driver state. */
struct pvz_config {
	__u32 magic;
	__u32 version;
	__u32 osid;
	__u32 status;
	__u64 bvnc;
	__u32 irq;
	__u32 priority;
	__u64 regs_ipa;
	__u32 regs_size;
	__u32 max_osids;
	__u64 fw_heap_ipa;
	__u64 fw_heap_size;
	/* driver-side state, not config space */
	__u64 features;          /* negotiated device feature bits */
	__u32 config_changes;    /* config-change interrupts seen */
	__u32 config_errors;     /* re-reads that failed validation */
	__u64 events_received;
	__u64 events_dropped;    /* queued for user space but overwritten */
	__u64 events_malformed;  /* wrong length or unknown type, discarded */
	__u64 kicks_posted;
	__u64 kicks_completed;
	__u64 calls;
	__u64 call_timeouts;
	__u64 call_protocol_errors;
	__u64 events_deferred;   /* eventq interrupts that hit the budget */
	__u32 device_resets;     /* NEEDS_RESET recoveries */
	__u32 cleanup_failures;  /* probe/remove/reset could not clear host state */
	__u64 last_request_id;   /* request ids increase per device, never reused */
};

/* Common part of every call ioctl. func_id/dev_id go to the device as
 * given (dev_id != 0 is how a test provokes INVALID_PARAMS); status and
 * request_id come back. */
struct pvz_call_hdr {
	__u32 func_id;
	__u32 dev_id;
	__u32 status;      /* out: enum pvz_status */
	__u32 request_id;  /* out: the id the driver used (echo checked) */
};

struct pvz_dev_config {
	struct pvz_call_hdr hdr;
	__u32 irq;
	__u32 regs_size;
	__u64 regs_pbase;
};

struct pvz_phys_heaps {
	struct pvz_call_hdr hdr;
	__u32 type;
	__u32 pad;
	__u64 fw_size;
	__u64 fw_paddr;
	__u64 gpu_size;
	__u64 gpu_paddr;
};

struct pvz_heap_origin {
	struct pvz_call_hdr hdr;
	__u32 heap;
	__u32 origin;
};

struct pvz_heap_addr_size {
	struct pvz_call_hdr hdr;
	__u32 heap;
	__u32 pad;
	__u64 size;
	__u64 addr;
};

struct pvz_reg {
	struct pvz_call_hdr hdr;
	__u32 offset;
	__u32 value;
};

/* RAW: request bytes sent as given, except that bytes 12..15 (request_id)
 * of a request of 16 bytes or more are the driver's own id; no validation of
 * the answer beyond "used length fits the buffer"; for bad-call tests.
 * Functions 3..6 (heap creation and mapping) are refused with EPERM unless
 * the module was loaded with debug_unsafe=1 (test images only). */
struct pvz_raw {
	__u32 req_len;     /* 0..PVZ_RAW_MAX */
	__u32 resp_len;    /* device-writable bytes offered, 1..PVZ_RAW_MAX */
	__u32 used_len;    /* out: len from the used ring */
	__u32 request_id;  /* out: the id written at bytes 12..15 (0: req_len < 16) */
	__u8 req[PVZ_RAW_MAX];
	__u8 resp[PVZ_RAW_MAX];
};

struct pvz_kick {
	__u32 write_offset;
	__u32 flags;
};

/* The firmware heap of the guest-origin policy. MAP_FW_HEAP asks the host
 * for FW_LOCAL's origin and size (GET_DEV_PHYS_HEAP_ORIGIN / _ADDR_SIZE),
 * allocates that much physically contiguous, zeroed guest RAM and sends
 * MAP_DEV_PHYS_HEAP with its own address; hdr.status is that call's status
 * (INVALID_PVZ_CONFIG when the origin is HOST; nothing is allocated then).
 * A heap already mapped gives EEXIST; a MAP the device refuses frees the
 * heap only if config space shows no mapping over it. UNMAP_FW_HEAP sends
 * UNMAP_DEV_PHYS_HEAP and frees the heap once config space shows that the
 * device maps nothing overlapping it (EBUSY while a process still has it
 * mmap()ed, or while the device keeps a mapping). Config space is re-read
 * after a call the device answered before either decision that depends on
 * it could rest on a stale copy (a back-end killed between its answer and
 * the read). mmap() offset PVZ_MMAP_FW_HEAP, MAP_SHARED, maps it for the
 * command ring. */
struct pvz_fw_heap {
	struct pvz_call_hdr hdr;
	__u64 size;   /* out */
	__u64 ipa;    /* out */
};

#define PVZ_MMAP_FW_HEAP   0x00000000ull
#define PVZ_MMAP_REGS      0x40000000ull  /* the register bank mirror, read-only */

#define PVZ_IOC_MAGIC 'Z'
#define PVZ_IOC_GET_CONFIG             _IOR(PVZ_IOC_MAGIC, 0x00, struct pvz_config)
#define PVZ_IOC_CREATE_DEV_CONFIG      _IOWR(PVZ_IOC_MAGIC, 0x01, struct pvz_dev_config)
#define PVZ_IOC_DESTROY_DEV_CONFIG     _IOWR(PVZ_IOC_MAGIC, 0x02, struct pvz_call_hdr)
#define PVZ_IOC_CREATE_DEV_PHYS_HEAPS  _IOWR(PVZ_IOC_MAGIC, 0x03, struct pvz_phys_heaps)
#define PVZ_IOC_DESTROY_DEV_PHYS_HEAPS _IOWR(PVZ_IOC_MAGIC, 0x04, struct pvz_call_hdr)
/* 0x05, 0x06 (MAP/UNMAP_DEV_PHYS_HEAP with a user-named address), 0x22 and
 * 0x23 (ALLOC/FREE_FW_HEAP) are retired: see PVZ_IOC_MAP_FW_HEAP. */
#define PVZ_IOC_GET_HEAP_ORIGIN        _IOWR(PVZ_IOC_MAGIC, 0x07, struct pvz_heap_origin)
#define PVZ_IOC_GET_HEAP_ADDR_SIZE     _IOWR(PVZ_IOC_MAGIC, 0x08, struct pvz_heap_addr_size)
#define PVZ_IOC_READ_REG               _IOWR(PVZ_IOC_MAGIC, 0x09, struct pvz_reg)
#define PVZ_IOC_WRITE_REG              _IOWR(PVZ_IOC_MAGIC, 0x0A, struct pvz_reg)
#define PVZ_IOC_RAW                    _IOWR(PVZ_IOC_MAGIC, 0x20, struct pvz_raw)
#define PVZ_IOC_KICK                   _IOW(PVZ_IOC_MAGIC, 0x21, struct pvz_kick)
#define PVZ_IOC_MAP_FW_HEAP            _IOWR(PVZ_IOC_MAGIC, 0x24, struct pvz_fw_heap)
#define PVZ_IOC_UNMAP_FW_HEAP          _IOWR(PVZ_IOC_MAGIC, 0x25, struct pvz_call_hdr)
/* debug_unsafe=1 only: put a chain with an address outside guest RAM on
 * hypercallq, so the device must go to NEEDS_RESET (recovery tests). */
#define PVZ_IOC_DEBUG_BREAK_RING       _IO(PVZ_IOC_MAGIC, 0x30)

#endif
