/* SPDX-License-Identifier: GPL-2.0 */
/*
 * virtio_pvz internals shared by the module's files:
 *   virtio_pvz_main.c    probe, remove, reboot, NEEDS_RESET recovery, config space
 *   virtio_pvz_vq.c      hypercallq (calls), eventq (the GPU interrupt), kickq
 *   virtio_pvz_fwheap.c  the firmware heap's lifecycle (MAP/UNMAP with the driver's address)
 *   virtio_pvz_heap.c    physically contiguous guest RAM for it
 *   virtio_pvz_fops.c    /dev/pvz: ioctls, read/poll, mmap
 *   virtio_pvz_calls.c   the typed PVZ calls and the checks of their outputs
 *   virtio_pvz_kapi.c    the in-kernel API (virtio_pvz_kapi.h) for a DDK's VMM type
 *
 * Lifetime: struct pvz_dev is reference counted (probe, every open file and
 * every mapping hold one) and outlives the virtio device. Everything that
 * touches the device holds dev_sem for reading and finds p->vdev non-NULL;
 * remove, reboot and reset recovery hold it for writing. A writer first
 * raises `aborting` so that calls waiting for the device end at once instead
 * of after the call timeout. Lock order: the module's device list lock,
 * dev_sem, heap_lock, call_lock, cfg_lock; the spinlocks are innermost. No
 * user copy happens under any of them (mmap() takes mmap_lock before
 * heap_lock).
 *
 * An in-kernel client (a DDK's VMM type) claims a device exclusively: while
 * it does, the /dev/pvz ioctls that change the device answer EBUSY, so user
 * space cannot unmap the firmware heap from under the client's firmware. The
 * claim is set and tested under heap_lock.
 */
#ifndef VIRTIO_PVZ_H
#define VIRTIO_PVZ_H

#include <linux/atomic.h>
#include <linux/kref.h>
#include <linux/miscdevice.h>
#include <linux/mutex.h>
#include <linux/rwsem.h>
#include <linux/spinlock.h>
#include <linux/wait.h>
#include <linux/workqueue.h>
#include "virtio_pvz_uapi.h"
#include "virtio_pvz_heap.h"
#include "virtio_pvz_kapi.h"

#define PVZ_EVENT_FIFO      256          /* events queued for user space */
#define PVZ_MAX_FW_HEAP     (256ull << 20)
#define PVZ_MIN_FW_HEAP     (64ull << 10) /* ring header + a command area */
#define PVZ_MAX_OSIDS_LIMIT 64           /* sanity bound for max_osids from the device */
#define PVZ_CLEANUP_TIMEOUT_MS 2000u     /* per call, when the driver tidies the device */
#define PVZ_IRQ_POLL_MS 200u            /* a call looks at the used ring itself this often */

enum { PVZ_VQ_HYPERCALL, PVZ_VQ_EVENT, PVZ_VQ_KICK, PVZ_NVQS };

struct pvz_event_le {
	__le32 type, code;
	__le64 value;
};

struct pvz_dev {
	struct kref ref;
	char devname[32];         /* "virtio1": log prefix that never needs vdev */
	char name[16];            /* "pvz", "pvz1" */
	int index;
	struct miscdevice misc;
	bool misc_registered;
	struct list_head node;    /* in the module's list of bound devices */

	struct rw_semaphore dev_sem;
	struct virtio_device *vdev;  /* NULL once removed or shut down (dev_sem) */
	bool removed;             /* remove() began: new opens, mmaps, ioctls fail */
	atomic_t aborting;        /* a writer waits for dev_sem: waits end now */
	int abort_err;            /* what they end with: -ENODEV or -EIO */
	struct virtqueue *vqs[PVZ_NVQS];

	/* hypercallq: one call at a time; hvq_lock orders callback vs abandon */
	struct mutex call_lock;
	spinlock_t hvq_lock;
	wait_queue_head_t call_wq;
	u32 last_request_id;

	/* eventq */
	spinlock_t ev_lock;
	struct pvz_event_le *ev_bufs;
	unsigned int n_ev_bufs;
	struct pvz_event fifo[PVZ_EVENT_FIFO];
	unsigned int fifo_head, fifo_count;
	wait_queue_head_t ev_wait;
	struct work_struct ev_work;   /* the rest of an eventq interrupt over budget */

	/* kickq */
	spinlock_t kick_lock;

	/* config space, last validated copy */
	struct mutex cfg_lock;
	struct pvz_config cfg;
	struct work_struct cfg_work;
	struct work_struct reset_work;

	/* firmware heap from guest RAM, owned by the driver */
	struct mutex heap_lock;
	struct pvz_heap heap;
	bool heap_mapped;         /* the device may write it: never freed while set */
	atomic_t heap_user_maps;  /* mmap()s of the heap */

	/* in-kernel client (virtio_pvz_kapi.c) */
	struct virtio_pvz *kclient;          /* the claim (heap_lock) */
	virtio_pvz_event_fn kevent_fn;       /* its event handler (ev_lock) */
	void *kevent_data;

	atomic64_t events_received, events_dropped, events_malformed, events_deferred;
	atomic64_t kicks_posted, kicks_completed;
	atomic64_t calls, call_timeouts, call_irqs_missed, call_protocol_errors;
	atomic_t config_changes, config_errors, device_resets, cleanup_failures;
};

#define pvz_err(p, fmt, ...)  pr_err("virtio_pvz %s: " fmt, (p)->devname, ##__VA_ARGS__)
#define pvz_warn(p, fmt, ...) pr_warn("virtio_pvz %s: " fmt, (p)->devname, ##__VA_ARGS__)
#define pvz_info(p, fmt, ...) pr_info("virtio_pvz %s: " fmt, (p)->devname, ##__VA_ARGS__)
#define pvz_dbg(p, fmt, ...)  pr_debug("virtio_pvz %s: " fmt, (p)->devname, ##__VA_ARGS__)
#define pvz_err_rl(p, fmt, ...)  pr_err_ratelimited("virtio_pvz %s: " fmt, (p)->devname, ##__VA_ARGS__)
#define pvz_warn_rl(p, fmt, ...) pr_warn_ratelimited("virtio_pvz %s: " fmt, (p)->devname, ##__VA_ARGS__)

/* module parameters */
extern unsigned int pvz_call_timeout_ms;
extern unsigned int pvz_event_buffers;
extern unsigned int pvz_event_budget;
extern bool pvz_debug_unsafe;

/* Call flags: who waits and for how long. */
#define PVZ_CALL_USER    0x1  /* an ioctl or an in-kernel client: killable, ends when a writer aborts */
#define PVZ_CALL_CLEANUP 0x2  /* the driver tidying the device: short timeout */

/* virtio_pvz_main.c */
void pvz_put(struct pvz_dev *p);
int pvz_refresh_config(struct pvz_dev *p, struct pvz_config *out);
int pvz_dev_enter(struct pvz_dev *p, bool killable);
void pvz_dev_exit(struct pvz_dev *p);
int pvz_claim(unsigned int index, struct virtio_pvz *c, unsigned int *gen);
wait_queue_head_t *pvz_bound_waitq(void);
unsigned int pvz_bound_gen(void);

/* virtio_pvz_calls.c */
long pvz_typed_call(struct pvz_dev *p, unsigned int cmd, void *a);

/* virtio_pvz_vq.c */
int pvz_transact(struct pvz_dev *p, const void *req, u32 req_len, void *resp, u32 resp_len,
		 u32 *used, u32 *request_id, unsigned int flags);
int pvz_hypercall(struct pvz_dev *p, struct pvz_call_hdr *h, u32 fn, const void *in, u32 in_len,
		  void *out, u32 out_len, unsigned int flags);
int pvz_break_ring(struct pvz_dev *p);
void pvz_hvq_done(struct virtqueue *vq);
void pvz_evq_done(struct virtqueue *vq);
void pvz_ev_work(struct work_struct *work);
int pvz_post_event_bufs(struct pvz_dev *p);
void pvz_kickq_done(struct virtqueue *vq);
int pvz_kick(struct pvz_dev *p, const struct pvz_kick *u);
void pvz_vqs_reclaim(struct pvz_dev *p);

/* virtio_pvz_fwheap.c */
int pvz_fw_heap_map(struct pvz_dev *p, struct pvz_fw_heap *h);
int pvz_fw_heap_unmap(struct pvz_dev *p, struct pvz_call_hdr *h);
void pvz_fw_heap_config_seen(struct pvz_dev *p);
int pvz_device_cleanup(struct pvz_dev *p, const char *why);

/* virtio_pvz_kapi.c: an in-kernel client's handle */
struct virtio_pvz {
	struct pvz_dev *p;
};

/* virtio_pvz_fops.c */
extern const struct file_operations pvz_fops;

#endif
