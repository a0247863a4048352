// SPDX-License-Identifier: GPL-2.0
/*
 * The three virtqueues: hypercallq carries the synchronous PVZ calls, eventq
 * the GPU interrupt (events), kickq the firmware doorbell. Callers hold
 * p->dev_sem (pvz_dev_enter) so p->vdev and p->vqs are live.
 */
#include <linux/module.h>
#include <linux/virtio.h>
#include <linux/virtio_config.h>
#include <linux/virtio_ring.h>
#include <linux/scatterlist.h>
#include <linux/slab.h>
#include <linux/sched.h>
#include <asm/unaligned.h>
#include "virtio_pvz.h"

/* One in-flight hypercall. Allocated per call so that a call abandoned after
 * a timeout stays owned by the device until it returns the chain (the
 * callback frees it) or until the device is reset (pvz_vqs_reclaim). */
struct pvz_call {
	bool done;
	bool abandoned;
	u32 used_len;
	u8 req[PVZ_RAW_MAX];
	u8 resp[PVZ_RAW_MAX];
};

/* Unique and increasing for every device this module drives, across resets
 * and rebinds, so a device that replays a call after a back-end restart can
 * tell it from a new one. The device forgets them when it is reset. */
static atomic_t pvz_request_ids = ATOMIC_INIT(0);

static u32 pvz_next_request_id(struct pvz_dev *p)
{
	u32 id;

	do {
		id = (u32)atomic_inc_return(&pvz_request_ids);
	} while (!id);  /* 0 stays "no id" */
	WRITE_ONCE(p->last_request_id, id);
	return id;
}

/* ---- hypercallq ---- */

void pvz_hvq_done(struct virtqueue *vq)
{
	struct pvz_dev *p = vq->vdev->priv;
	struct pvz_call *call;
	unsigned long flags;
	unsigned int len;
	bool any = false;

	spin_lock_irqsave(&p->hvq_lock, flags);
	do {
		virtqueue_disable_cb(vq);
		while ((call = virtqueue_get_buf(vq, &len))) {
			if (call->abandoned) {
				kfree(call);
				continue;
			}
			call->used_len = len;
			WRITE_ONCE(call->done, true);
			any = true;
		}
	} while (!virtqueue_enable_cb(vq));
	spin_unlock_irqrestore(&p->hvq_lock, flags);
	if (any)
		wake_up_all(&p->call_wq);
}

static bool pvz_call_over(struct pvz_dev *p, struct pvz_call *call, unsigned int flags)
{
	return READ_ONCE(call->done) || ((flags & PVZ_CALL_USER) && atomic_read(&p->aborting));
}

/*
 * Wait for a call: > 0 when it is over (answered, or aborting), 0 after `ms`,
 * < 0 when killed. The device's interrupt normally ends the wait; every
 * PVZ_IRQ_POLL_MS without one the used ring is read here too. A lost
 * used-buffer notification is otherwise for good under EVENT_IDX: the device
 * is not asked again until the driver reaps, and the driver reaps on an
 * interrupt. Seen on QEMU's arm virt board: it declares virtio-mmio
 * interrupts edge-triggered while virtio-mmio holds its line high as long as
 * any INTERRUPT_STATUS bit is set, so a notification landing between the
 * transport's status read and its ACK leaves the line high with no new edge,
 * and no interrupt of the device arrives again until a reset. The project's
 * QEMU describes them level-high (patch 0015); other boards may not.
 */
static long pvz_wait_call(struct pvz_dev *p, struct virtqueue *vq, struct pvz_call *call,
			  unsigned int flags, unsigned int ms)
{
	unsigned long deadline = jiffies + msecs_to_jiffies(ms);
	long left, slice;

	for (;;) {
		slice = min_t(long, (long)(deadline - jiffies), msecs_to_jiffies(PVZ_IRQ_POLL_MS));
		if (slice <= 0)
			slice = 1;
		if (flags & PVZ_CALL_USER)
			left = wait_event_killable_timeout(p->call_wq, pvz_call_over(p, call, flags), slice);
		else
			left = wait_event_timeout(p->call_wq, pvz_call_over(p, call, flags), slice);
		if (left != 0)
			return left;
		pvz_hvq_done(vq);
		if (READ_ONCE(call->done)) {
			u64 n = atomic64_inc_return(&p->call_irqs_missed);

			pvz_warn_rl(p, "hypercall answered without an interrupt (%llu so far): read from the used ring\n", n);
			return 1;
		}
		if (time_after_eq(jiffies, deadline))
			return 0;
	}
}

/*
 * Put one request/response chain on hypercallq and wait for it. Caller holds
 * dev_sem and call_lock. A request of 16 bytes or more carries the driver's
 * request id at bytes 12..15, returned in *request_id whenever the chain was
 * put on the ring, even if the call then fails (the device may still run
 * it); 0 otherwise.
 */
int pvz_transact(struct pvz_dev *p, const void *req, u32 req_len, void *resp, u32 resp_len,
		 u32 *used, u32 *request_id, unsigned int flags)
{
	struct virtqueue *vq = p->vqs[PVZ_VQ_HYPERCALL];
	struct scatterlist out, in, *sgs[2];
	unsigned int nout = 0, ms = clamp(READ_ONCE(pvz_call_timeout_ms), 1u, 600000u);
	struct pvz_call *call;
	unsigned long irqf;
	bool notify;
	long left;
	int err;

	if (req_len > PVZ_RAW_MAX || !resp_len || resp_len > PVZ_RAW_MAX)
		return -EINVAL;
	if ((flags & PVZ_CALL_USER) && atomic_read(&p->aborting))
		return p->abort_err;
	if (flags & PVZ_CALL_CLEANUP)
		ms = min(ms, PVZ_CLEANUP_TIMEOUT_MS);
	call = kzalloc(sizeof(*call), GFP_KERNEL);
	if (!call)
		return -ENOMEM;
	memcpy(call->req, req, req_len);
	*request_id = 0;
	if (req_len >= PVZ_REQ_HDR_SIZE) {
		*request_id = pvz_next_request_id(p);
		put_unaligned_le32(*request_id, call->req + 12);
	}
	if (req_len) {
		sg_init_one(&out, call->req, req_len);
		sgs[nout++] = &out;
	}
	sg_init_one(&in, call->resp, resp_len);
	sgs[nout] = &in;

	spin_lock_irqsave(&p->hvq_lock, irqf);
	err = virtqueue_add_sgs(vq, sgs, nout, 1, call, GFP_ATOMIC);
	notify = !err && virtqueue_kick_prepare(vq);
	spin_unlock_irqrestore(&p->hvq_lock, irqf);
	if (err) {
		kfree(call);
		*request_id = 0;   /* never on the ring: no id to look for */
		/* -ENOSPC: every descriptor is held by abandoned calls. */
		return virtqueue_is_broken(vq) ? -EIO : err;
	}
	if (notify)
		virtqueue_notify(vq);
	atomic64_inc(&p->calls);

	left = pvz_wait_call(p, vq, call, flags, ms);
	if (left == 0) {
		const struct vring *vr = virtqueue_get_vring(vq);

		/* Which side holds it: the device's place (avail_event) against ours. */
		pvz_warn_rl(p, "hypercall unanswered: avail idx %u, used idx %u, device avail_event %u, used_event %u\n",
			    virtio16_to_cpu(p->vdev, READ_ONCE(vr->avail->idx)),
			    virtio16_to_cpu(p->vdev, READ_ONCE(vr->used->idx)),
			    virtio16_to_cpu(p->vdev, READ_ONCE(vring_avail_event(vr))),
			    virtio16_to_cpu(p->vdev, READ_ONCE(vring_used_event(vr))));
	}
	spin_lock_irqsave(&p->hvq_lock, irqf);
	if (!call->done) {
		/* The device still owns the chain. */
		call->abandoned = true;
		spin_unlock_irqrestore(&p->hvq_lock, irqf);
		if (left > 0)   /* a remove or reset is waiting for us */
			return p->abort_err;
		if (left == 0) {
			atomic64_inc(&p->call_timeouts);
			pvz_warn_rl(p, "hypercall timed out after %u ms\n", ms);
			/* A device that stopped answering may be in NEEDS_RESET
			 * without having said so by interrupt: look. */
			schedule_work(&p->cfg_work);
		}
		if (virtqueue_is_broken(vq))
			return -EIO;
		return left == 0 ? -ETIMEDOUT : -EINTR;
	}
	spin_unlock_irqrestore(&p->hvq_lock, irqf);
	*used = call->used_len;
	memcpy(resp, call->resp, min(call->used_len, resp_len));
	kfree(call);
	if (*used > resp_len) {
		atomic64_inc(&p->call_protocol_errors);
		pvz_err_rl(p, "used length %u exceeds the %u writable bytes offered\n", *used, resp_len);
		return -EPROTO;
	}
	return 0;
}

static const char *const pvz_fn_names[] = {
	[PVZ_FN_CREATE_DEV_CONFIG] = "CREATE_DEV_CONFIG",
	[PVZ_FN_DESTROY_DEV_CONFIG] = "DESTROY_DEV_CONFIG",
	[PVZ_FN_CREATE_DEV_PHYS_HEAPS] = "CREATE_DEV_PHYS_HEAPS",
	[PVZ_FN_DESTROY_DEV_PHYS_HEAPS] = "DESTROY_DEV_PHYS_HEAPS",
	[PVZ_FN_MAP_DEV_PHYS_HEAP] = "MAP_DEV_PHYS_HEAP",
	[PVZ_FN_UNMAP_DEV_PHYS_HEAP] = "UNMAP_DEV_PHYS_HEAP",
	[PVZ_FN_GET_DEV_PHYS_HEAP_ORIGIN] = "GET_DEV_PHYS_HEAP_ORIGIN",
	[PVZ_FN_GET_DEV_PHYS_HEAP_ADDR_SIZE] = "GET_DEV_PHYS_HEAP_ADDR_SIZE",
	[PVZ_FN_READ_REG] = "READ_REG",
	[PVZ_FN_WRITE_REG] = "WRITE_REG",
};

/*
 * One PVZ call: header + in bytes out, header + out bytes back. Caller holds
 * dev_sem. On a PVZ status other than OK the output fields are zeroed (the
 * device may write only the header then).
 */
int pvz_hypercall(struct pvz_dev *p, struct pvz_call_hdr *h, u32 fn, const void *in, u32 in_len,
		  void *out, u32 out_len, unsigned int flags)
{
	u8 req[PVZ_REQ_HDR_SIZE + 32], resp[PVZ_RESP_HDR_SIZE + 48];
	u32 used = 0, rlen = PVZ_RESP_HDR_SIZE + out_len, st, efn, eid, rsvd, id = 0;
	int err;

	if (WARN_ON(fn < 1 || fn > PVZ_FN_MAX || in_len > sizeof(req) - PVZ_REQ_HDR_SIZE ||
		    rlen > sizeof(resp)))
		return -EINVAL;
	if (flags & PVZ_CALL_USER) {
		if (mutex_lock_killable(&p->call_lock))
			return -EINTR;
	} else {
		mutex_lock(&p->call_lock);
	}
	put_unaligned_le32(fn, req + 0);
	put_unaligned_le32(h->func_id, req + 4);
	put_unaligned_le32(h->dev_id, req + 8);
	put_unaligned_le32(0, req + 12);
	memcpy(req + PVZ_REQ_HDR_SIZE, in, in_len);
	err = pvz_transact(p, req, PVZ_REQ_HDR_SIZE + in_len, resp, rlen, &used, &id, flags);
	mutex_unlock(&p->call_lock);
	h->request_id = id;
	if (err)
		return err;

#define BAD(fmt, ...) do { atomic64_inc(&p->call_protocol_errors); \
	pvz_err_rl(p, "%s: " fmt "\n", pvz_fn_names[fn], ##__VA_ARGS__); return -EPROTO; } while (0)
	if (used < PVZ_RESP_HDR_SIZE)
		BAD("used length %u is shorter than the %u-byte response header", used, PVZ_RESP_HDR_SIZE);
	st = get_unaligned_le32(resp + 0);
	efn = get_unaligned_le32(resp + 4);
	eid = get_unaligned_le32(resp + 8);
	rsvd = get_unaligned_le32(resp + 12);
	if (efn != fn)
		BAD("echoed function %u, sent %u", efn, fn);
	if (eid != id)
		BAD("echoed request_id %u, sent %u", eid, id);
	if (rsvd)
		BAD("reserved response word %#x, must be 0", rsvd);
	if (st > PVZ_STATUS_MAX)
		BAD("status %u outside 0..%u", st, PVZ_STATUS_MAX);
	if (st == PVZ_OK && used != rlen)
		BAD("status OK with used length %u, expected %u", used, rlen);
	if (st != PVZ_OK && used != PVZ_RESP_HDR_SIZE && used != rlen)
		BAD("status %u with used length %u, expected %u or %u", st, used, PVZ_RESP_HDR_SIZE, rlen);
#undef BAD
	h->status = st;
	if (out_len) {
		if (st == PVZ_OK)
			memcpy(out, resp + PVZ_RESP_HDR_SIZE, out_len);
		else
			memset(out, 0, out_len);
	}
	return 0;
}

/*
 * debug_unsafe only: a READ_REG whose request descriptor points far outside
 * guest RAM. A device must refuse the chain and go to NEEDS_RESET; the call
 * is abandoned from the start (the device never completes it; the reset
 * reclaims it). Caller holds dev_sem. Transports that translate addresses
 * (VIRTIO_F_ACCESS_PLATFORM) would map the bogus page: refused there.
 */
int pvz_break_ring(struct pvz_dev *p)
{
	struct virtqueue *vq = p->vqs[PVZ_VQ_HYPERCALL];
	struct scatterlist out, in, *sgs[2] = { &out, &in };
	struct pvz_call *call;
	unsigned long irqf;
	bool notify;
	int err;

	if (virtio_has_feature(p->vdev, VIRTIO_F_ACCESS_PLATFORM))
		return -EOPNOTSUPP;
	call = kzalloc(sizeof(*call), GFP_KERNEL);
	if (!call)
		return -ENOMEM;
	call->abandoned = true;
	sg_init_table(&out, 1);
	/* 32 TiB: no guest RAM there. pfn_to_page() is arithmetic only here
	 * (no DMA API, so the page is never touched, only its address used). */
	sg_set_page(&out, pfn_to_page(PHYS_PFN(1ull << 45)), PVZ_REQ_HDR_SIZE + 4, 0);
	sg_init_one(&in, call->resp, PVZ_RESP_HDR_SIZE + 4);
	if (mutex_lock_killable(&p->call_lock)) {
		kfree(call);
		return -EINTR;
	}
	spin_lock_irqsave(&p->hvq_lock, irqf);
	err = virtqueue_add_sgs(vq, sgs, 1, 1, call, GFP_ATOMIC);
	notify = !err && virtqueue_kick_prepare(vq);
	spin_unlock_irqrestore(&p->hvq_lock, irqf);
	if (notify)
		virtqueue_notify(vq);
	mutex_unlock(&p->call_lock);
	if (err) {
		kfree(call);
		return err;
	}
	pvz_warn(p, "debug: published a hypercallq chain at IPA %#llx (outside guest RAM)\n", 1ull << 45);
	return 0;
}

/* ---- eventq ---- */

static int pvz_post_event_buf(struct pvz_dev *p, struct pvz_event_le *b)
{
	struct scatterlist sg;

	memset(b, 0, sizeof(*b));
	sg_init_one(&sg, b, sizeof(*b));
	return virtqueue_add_inbuf(p->vqs[PVZ_VQ_EVENT], &sg, 1, b, GFP_ATOMIC);
}

/* At (re)initialisation, before DRIVER_OK is acted on: every buffer posted. */
int pvz_post_event_bufs(struct pvz_dev *p)
{
	unsigned int i;
	int err = 0;

	spin_lock_irq(&p->ev_lock);
	for (i = 0; i < p->n_ev_bufs && !err; i++)
		err = pvz_post_event_buf(p, &p->ev_bufs[i]);
	virtqueue_kick(p->vqs[PVZ_VQ_EVENT]);
	spin_unlock_irq(&p->ev_lock);
	if (err)
		pvz_err(p, "cannot post event buffer %u: %d\n", i - 1, err);
	return err;
}

/* Caller holds ev_lock: an in-kernel handler is called under it, so
 * clearing the handler under it is synchronous. */
static void pvz_queue_event(struct pvz_dev *p, u32 type, const struct pvz_event_le *b)
{
	unsigned int slot;

	if (p->kevent_fn) {
		struct pvz_event ev = { .type = type, .code = le32_to_cpu(b->code),
					.value = le64_to_cpu(b->value) };

		atomic64_inc(&p->events_received);
		p->kevent_fn(p->kevent_data, &ev);
		return;
	}
	if (p->fifo_count == PVZ_EVENT_FIFO) {
		p->fifo_head = (p->fifo_head + 1) % PVZ_EVENT_FIFO;
		p->fifo_count--;
		atomic64_inc(&p->events_dropped);
	}
	slot = (p->fifo_head + p->fifo_count) % PVZ_EVENT_FIFO;
	p->fifo[slot].type = type;
	p->fifo[slot].code = le32_to_cpu(b->code);
	p->fifo[slot].value = le64_to_cpu(b->value);
	p->fifo_count++;
	atomic64_inc(&p->events_received);
}

/*
 * Take at most `budget` used event buffers, queue their events, repost the
 * buffers. A device can hand back a reposted buffer at once, for ever: the
 * budget keeps that out of interrupt context. Returns true when the ring is
 * drained and callbacks are enabled again.
 */
static bool pvz_ev_drain(struct pvz_dev *p, unsigned int budget)
{
	struct virtqueue *vq = p->vqs[PVZ_VQ_EVENT];
	struct pvz_event_le *b;
	unsigned int len, n = 0;
	unsigned long flags;
	bool any = false, done;

	spin_lock_irqsave(&p->ev_lock, flags);
	virtqueue_disable_cb(vq);
	while (n < budget && (b = virtqueue_get_buf(vq, &len))) {
		u32 type = le32_to_cpu(b->type);

		n++;
		if (b < p->ev_bufs || b >= p->ev_bufs + p->n_ev_bufs) {
			/* Not a token we gave: the ring is corrupt. */
			pvz_err_rl(p, "eventq returned an unknown buffer\n");
			continue;
		}
		if (len != sizeof(*b) || (type != PVZ_EVENT_FIRMWARE && type != PVZ_EVENT_VMM)) {
			atomic64_inc(&p->events_malformed);
			pvz_warn_rl(p, "event discarded: length %u (expected %zu), type %u (expected 1 or 2)\n",
				    len, sizeof(*b), type);
		} else {
			pvz_queue_event(p, type, b);
			any = true;
		}
		if (pvz_post_event_buf(p, b))
			pvz_err_rl(p, "cannot repost event buffer\n");
	}
	done = n < budget && virtqueue_enable_cb(vq);
	if (n)
		virtqueue_kick(vq);
	spin_unlock_irqrestore(&p->ev_lock, flags);
	if (any)
		wake_up_interruptible(&p->ev_wait);
	return done;
}

static unsigned int pvz_ev_budget(void)
{
	return clamp(READ_ONCE(pvz_event_budget), 1u, 256u);
}

void pvz_evq_done(struct virtqueue *vq)
{
	struct pvz_dev *p = vq->vdev->priv;

	if (!pvz_ev_drain(p, pvz_ev_budget())) {
		/* Callbacks stay off; the work item takes the rest. */
		atomic64_inc(&p->events_deferred);
		schedule_work(&p->ev_work);
	}
}

void pvz_ev_work(struct work_struct *work)
{
	struct pvz_dev *p = container_of(work, struct pvz_dev, ev_work);

	while (!pvz_ev_drain(p, pvz_ev_budget()))
		cond_resched();
}

/* ---- kickq ---- */

struct pvz_kick_le {
	__le32 write_offset, flags;
};

static void pvz_kick_reclaim(struct pvz_dev *p)
{
	struct pvz_kick_le *k;
	unsigned int len;

	/* Bounded by the ring size: doorbells are never reposted. */
	while ((k = virtqueue_get_buf(p->vqs[PVZ_VQ_KICK], &len))) {
		kfree(k);
		atomic64_inc(&p->kicks_completed);
	}
}

void pvz_kickq_done(struct virtqueue *vq)
{
	struct pvz_dev *p = vq->vdev->priv;
	unsigned long flags;

	spin_lock_irqsave(&p->kick_lock, flags);
	pvz_kick_reclaim(p);
	spin_unlock_irqrestore(&p->kick_lock, flags);
}

/* Caller holds dev_sem. */
int pvz_kick(struct pvz_dev *p, const struct pvz_kick *u)
{
	struct virtqueue *vq = p->vqs[PVZ_VQ_KICK];
	struct pvz_kick_le *k;
	struct scatterlist sg;
	unsigned long flags;
	bool notify;
	int err;

	if (u->write_offset % PVZ_CMD_SIZE) {
		pvz_dbg(p, "kick: write_offset %u not a multiple of %u\n", u->write_offset, PVZ_CMD_SIZE);
		return -EINVAL;
	}
	if (u->flags)
		return -EINVAL; /* no kick flags are defined in version 1 */
	k = kmalloc(sizeof(*k), GFP_KERNEL);
	if (!k)
		return -ENOMEM;
	k->write_offset = cpu_to_le32(u->write_offset);
	k->flags = cpu_to_le32(u->flags);
	sg_init_one(&sg, k, sizeof(*k));
	spin_lock_irqsave(&p->kick_lock, flags);
	pvz_kick_reclaim(p);
	err = virtqueue_add_outbuf(vq, &sg, 1, k, GFP_ATOMIC);
	notify = !err && virtqueue_kick_prepare(vq);
	spin_unlock_irqrestore(&p->kick_lock, flags);
	if (err) {
		kfree(k);
		/* -ENOSPC: the firmware has not returned earlier doorbells. */
		return virtqueue_is_broken(vq) ? -EIO : (err == -ENOSPC ? -EBUSY : err);
	}
	if (notify)
		virtqueue_notify(vq);
	atomic64_inc(&p->kicks_posted);
	return 0;
}

/* After a device reset the device owns nothing: free abandoned calls and
 * unreturned doorbells (event buffers live in ev_bufs). */
void pvz_vqs_reclaim(struct pvz_dev *p)
{
	void *buf;

	while ((buf = virtqueue_detach_unused_buf(p->vqs[PVZ_VQ_HYPERCALL])))
		kfree(buf);
	while ((buf = virtqueue_detach_unused_buf(p->vqs[PVZ_VQ_KICK])))
		kfree(buf);
	while (virtqueue_detach_unused_buf(p->vqs[PVZ_VQ_EVENT]))
		;
}
