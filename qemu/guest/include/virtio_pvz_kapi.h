/* SPDX-License-Identifier: GPL-2.0 */
/*
 * virtio_pvz in-kernel API: what a DDK's VMM type (qemu/guest/ddk/
 * vmm_type_virtio.c) or any other kernel module calls to make PVZ calls,
 * ring the firmware doorbell and receive the device's events. Exported
 * EXPORT_SYMBOL_GPL by the virtio_pvz module; build a client against this
 * header with KBUILD_EXTRA_SYMBOLS pointing at virtio_pvz's Module.symvers.
 *
 * Model: a client claims one bound device (virtio_pvz_get()) and owns it
 * until virtio_pvz_put(). The claim is exclusive: a second claim gets EBUSY,
 * and while it lasts the /dev/pvz ioctls that change the device answer EBUSY
 * (user space can still read config, registers and events are the client's).
 * The handle stays valid when the device goes away (unbind, rmmod of the
 * transport, PCI remove): every call then answers -ENODEV, nothing touches
 * the freed virtio device, and the driver's remove has already unmapped the
 * firmware heap and destroyed the heaps and the device config on the host.
 * A device that is bound again is a new device: claim it again.
 *
 * Calls: every function named after a PVZ call sends exactly that call on
 * hypercallq (spec docs/virtio-pvz.md section 5) with the DDK header's
 * parameters (ui32FuncID and ui32DevID are passed through to the wire
 * header) and returns
 *   0          the device answered PVZ_OK; outputs are written
 *   > 0        the device answered that enum pvz_status; outputs are zeroed
 *   -ETIMEDOUT no answer within virtio_pvz.call_timeout_ms
 *   -EPROTO    the answer was malformed or contradicts config space (logged)
 *   -EIO       a device reset ended the call (the driver re-initialised the
 *              device; the host holds nothing of this guest afterwards)
 *   -ENODEV    the device was removed
 *   -EINTR     the calling task was killed while waiting
 *   -EINVAL    a NULL handle or output pointer
 * Calls sleep: process context only, no spinlock held. One call is on the
 * wire at a time per device; concurrent callers queue on a mutex.
 *
 * Events: eventq is the GPU interrupt. With a handler set, every well-formed
 * event goes to it instead of /dev/pvz readers. The handler runs in interrupt
 * context (or in the driver's work item when an interrupt hit the event
 * budget) with the event lock held and interrupts off: it must not sleep or
 * call any virtio_pvz_* function; defer the work (as a DDK defers its MISR).
 */
#ifndef VIRTIO_PVZ_KAPI_H
#define VIRTIO_PVZ_KAPI_H

#include <linux/types.h>
#include "virtio_pvz_uapi.h"

/* Bumped when a function's meaning or shape changes. */
#define VIRTIO_PVZ_KAPI_VERSION 1

/* A claimed device: opaque to clients. */
struct virtio_pvz;

/**
 * struct virtio_pvz_info - config space and driver state of a claimed device
 * @osid: this guest's OSID (assigned by the VM manager)
 * @max_osids: OSIDs the host supports
 * @status: config status bits (PVZ_STATUS_*)
 * @irq: the interrupt number the host gave this guest's device tree
 * @priority: the priority of OnVmOnline
 * @regs_size: size of the register bank (0x10000)
 * @bvnc: emulated core id, B<<48 | V<<32 | N<<16 | C
 * @regs_ipa: guest physical address of the register bank
 * @fw_heap_ipa: guest physical address of the mapped firmware heap, 0 if none
 * @fw_heap_size: its size, 0 if none
 * @features: negotiated virtio feature bits
 * @device_resets: NEEDS_RESET recoveries so far; a change means the host
 *                 dropped everything this guest had mapped or created
 * @cleanup_failures: cleanups (probe, remove, reset) the device did not finish
 * @removed: the device is gone; the other fields are the last values read
 *           (the ones remove's cleanup saw): @status without
 *           %PVZ_STATUS_FW_HEAP_MAPPED means the host no longer maps the heap
 */
struct virtio_pvz_info {
	u32 osid;
	u32 max_osids;
	u32 status;
	u32 irq;
	u32 priority;
	u32 regs_size;
	u64 bvnc;
	u64 regs_ipa;
	u64 fw_heap_ipa;
	u64 fw_heap_size;
	u64 features;
	u32 device_resets;
	u32 cleanup_failures;
	bool removed;
};

/**
 * typedef virtio_pvz_event_fn - an event handler (the GPU interrupt)
 * @data: the pointer given to virtio_pvz_set_event_handler()
 * @ev: the event, host-endian: @ev->type is %PVZ_EVENT_FIRMWARE or
 *      %PVZ_EVENT_VMM, @ev->code and @ev->value as the device sent them
 *
 * Interrupt context, event lock held: must not sleep.
 */
typedef void (*virtio_pvz_event_fn)(void *data, const struct pvz_event *ev);

/**
 * virtio_pvz_get() - claim a bound virtio-pvz device, waiting for it
 * @index: which device: 0 is the one behind /dev/pvz, 1 /dev/pvz1, ...
 * @timeout_ms: how long to wait for it to be bound (0: do not wait)
 *
 * Sleeps interruptibly until the device is bound (probe finished, so its
 * host state is clean) or the time is up.
 *
 * Return: the handle, or ERR_PTR(-ETIMEDOUT) (no such device bound in time),
 * ERR_PTR(-EINTR) (a signal), ERR_PTR(-EBUSY) (another client claimed it, or
 * user space holds the firmware heap mapped through /dev/pvz),
 * ERR_PTR(-ENOMEM).
 */
struct virtio_pvz *virtio_pvz_get(unsigned int index, unsigned int timeout_ms);

/**
 * virtio_pvz_put() - give the claim back
 * @c: the handle (NULL or an ERR_PTR is ignored)
 *
 * Clears the event handler (no handler runs once this returns) and ends the
 * claim. What the client created or mapped on the host stays: undo it first.
 */
void virtio_pvz_put(struct virtio_pvz *c);

/**
 * virtio_pvz_get_info() - read config space (validated) and driver counters
 * @c: the handle
 * @info: filled in
 *
 * Return: 0 (also after remove: then @info->removed is set), -EPROTO when
 * config space fails validation (the last valid copy is returned), -EINVAL.
 */
int virtio_pvz_get_info(struct virtio_pvz *c, struct virtio_pvz_info *info);

/**
 * virtio_pvz_create_dev_config() - CREATE_DEV_CONFIG (sHostFuncTab.pfnCreateDevConfig)
 * @c: the handle
 * @func_id: ui32FuncID, passed through
 * @dev_id: ui32DevID (the host accepts 0)
 * @irq: out: the interrupt number of this guest's device tree
 * @regs_size: out: register bank size
 * @regs_pbase: out: register bank guest physical address
 *
 * The outputs are checked against config space (-EPROTO if they differ).
 * Return: see the file comment.
 */
int virtio_pvz_create_dev_config(struct virtio_pvz *c, u32 func_id, u32 dev_id, u32 *irq,
				 u32 *regs_size, u64 *regs_pbase);

/**
 * virtio_pvz_destroy_dev_config() - DESTROY_DEV_CONFIG (pfnDestroyDevConfig)
 * @c: the handle
 * @func_id: ui32FuncID, passed through
 * @dev_id: ui32DevID
 *
 * Return: see the file comment.
 */
int virtio_pvz_destroy_dev_config(struct virtio_pvz *c, u32 func_id, u32 dev_id);

/**
 * virtio_pvz_create_dev_phys_heaps() - CREATE_DEV_PHYS_HEAPS (pfnCreateDevPhysHeaps)
 * @c: the handle
 * @func_id: ui32FuncID, passed through
 * @dev_id: ui32DevID
 * @type: out: PHYS_HEAP_TYPE (1 UMA, 2 LMA, 3 DMA)
 * @fw_size: out: firmware heap size (0 when its origin is the guest)
 * @fw_paddr: out: its guest physical address
 * @gpu_size: out: GPU heap size
 * @gpu_paddr: out: its guest physical address
 *
 * The outputs are checked (type 1..3, 4 KiB aligned, no wrap; -EPROTO).
 * Return: see the file comment.
 */
int virtio_pvz_create_dev_phys_heaps(struct virtio_pvz *c, u32 func_id, u32 dev_id, u32 *type,
				     u64 *fw_size, u64 *fw_paddr, u64 *gpu_size, u64 *gpu_paddr);

/**
 * virtio_pvz_destroy_dev_phys_heaps() - DESTROY_DEV_PHYS_HEAPS (pfnDestroyDevPhysHeaps)
 * @c: the handle
 * @func_id: ui32FuncID, passed through
 * @dev_id: ui32DevID
 *
 * Return: see the file comment.
 */
int virtio_pvz_destroy_dev_phys_heaps(struct virtio_pvz *c, u32 func_id, u32 dev_id);

/**
 * virtio_pvz_map_dev_phys_heap() - MAP_DEV_PHYS_HEAP (pfnMapDevPhysHeap)
 * @c: the handle
 * @func_id: ui32FuncID, passed through
 * @dev_id: ui32DevID
 * @size: heap size; the host wants exactly its firmware heap size
 *        (RGX_FIRMWARE_RAW_HEAP_SIZE of a DDK built like the host)
 * @paddr: guest physical address of memory the client allocated and keeps:
 *         physically contiguous guest RAM (virtio_pvz does not negotiate
 *         VIRTIO_F_ACCESS_PLATFORM, so the device uses guest physical
 *         addresses, which are the DMA addresses of a guest without IOMMU)
 *
 * The client must not free the memory while the host may map it: after a
 * failed or missing UNMAP, free it only when virtio_pvz_get_info() shows no
 * %PVZ_STATUS_FW_HEAP_MAPPED (or a range that does not overlap it).
 * Return: see the file comment.
 */
int virtio_pvz_map_dev_phys_heap(struct virtio_pvz *c, u32 func_id, u32 dev_id, u64 size, u64 paddr);

/**
 * virtio_pvz_unmap_dev_phys_heap() - UNMAP_DEV_PHYS_HEAP (pfnUnmapDevPhysHeap)
 * @c: the handle
 * @func_id: ui32FuncID, passed through
 * @dev_id: ui32DevID
 *
 * Return: see the file comment (%PVZ_NOT_FOUND: nothing was mapped).
 */
int virtio_pvz_unmap_dev_phys_heap(struct virtio_pvz *c, u32 func_id, u32 dev_id);

/**
 * virtio_pvz_get_dev_phys_heap_origin() - GET_DEV_PHYS_HEAP_ORIGIN: the host's policy
 * @c: the handle
 * @heap: PVRSRV_DEVICE_PHYS_HEAP (0 GPU_LOCAL .. 4 EXTERNAL)
 * @origin: out: PVRSRV_DEVICE_PHYS_HEAP_ORIGIN (0 HOST, 1 GUEST)
 *
 * Return: see the file comment.
 */
int virtio_pvz_get_dev_phys_heap_origin(struct virtio_pvz *c, u32 heap, u32 *origin);

/**
 * virtio_pvz_get_dev_phys_heap_addr_size() - GET_DEV_PHYS_HEAP_ADDR_SIZE: the host's answer
 * @c: the handle
 * @heap: PVRSRV_DEVICE_PHYS_HEAP
 * @size: out: size (conventions of the reference header: 0/0 UMA, 0/size
 *        DMA, addr/size carve-out or LMA)
 * @addr: out: guest physical address
 *
 * Return: see the file comment.
 */
int virtio_pvz_get_dev_phys_heap_addr_size(struct virtio_pvz *c, u32 heap, u64 *size, u64 *addr);

/**
 * virtio_pvz_read_reg() - READ_REG in this OSID's register bank
 * @c: the handle
 * @offset: 4-aligned, below 0x10000
 * @value: out
 *
 * Return: see the file comment.
 */
int virtio_pvz_read_reg(struct virtio_pvz *c, u32 offset, u32 *value);

/**
 * virtio_pvz_write_reg() - WRITE_REG in this OSID's register bank
 * @c: the handle
 * @offset: 4-aligned, below 0x10000
 * @value: the value (IRQ_STATUS is write-1-to-clear)
 *
 * Return: see the file comment.
 */
int virtio_pvz_write_reg(struct virtio_pvz *c, u32 offset, u32 value);

/**
 * virtio_pvz_kick() - ring the firmware doorbell (kickq)
 * @c: the handle
 * @write_offset: the command ring's write offset, a multiple of 32
 *
 * Does not wait for the firmware: its completion arrives as an event.
 * Return: 0, -EBUSY (kickq full: the firmware has not taken earlier kicks),
 * -EINVAL, -EIO, -ENODEV, -EINTR, -ENOMEM.
 */
int virtio_pvz_kick(struct virtio_pvz *c, u32 write_offset);

/**
 * virtio_pvz_set_event_handler() - deliver eventq events to a handler
 * @c: the handle
 * @fn: the handler, or NULL to stop delivery (events then go to /dev/pvz)
 * @data: passed to @fn
 *
 * Setting NULL is synchronous: once this returns, @fn is not running and
 * will not run again. virtio_pvz_put() does it too.
 * Return: 0 or -EINVAL.
 */
int virtio_pvz_set_event_handler(struct virtio_pvz *c, virtio_pvz_event_fn fn, void *data);

#endif
