// SPDX-License-Identifier: GPL-2.0
/*
 * virtio-pvz: the guest side of the PowerVR para-virtualization (PVZ)
 * connection, over the virtio device of spec docs "virtio-pvz" version 1.
 *
 * hypercallq carries the synchronous PVZ calls, eventq the GPU interrupt
 * (events), kickq the firmware doorbell. User space reaches all of it through
 * /dev/pvz (see virtio_pvz_uapi.h). The device is treated as hostile: every
 * length, echoed field, status and config value it returns is checked, and a
 * wrong one is reported with the value and the limit.
 */
#include <linux/module.h>
#include <linux/virtio.h>
#include <linux/virtio_config.h>
#include <linux/miscdevice.h>
#include <linux/scatterlist.h>
#include <linux/slab.h>
#include <linux/mm.h>
#include <linux/poll.h>
#include <linux/uaccess.h>
#include <linux/idr.h>
#include <linux/kref.h>
#include <linux/workqueue.h>
#include <asm/unaligned.h>
#include "virtio_pvz_uapi.h"
#include "virtio_pvz_heap.h"

static unsigned int call_timeout_ms = 5000;
module_param(call_timeout_ms, uint, 0644);
MODULE_PARM_DESC(call_timeout_ms, "hypercall timeout in ms (1..600000)");

static unsigned int event_buffers = 16;
module_param(event_buffers, uint, 0444);
MODULE_PARM_DESC(event_buffers, "16-byte buffers kept posted on eventq (1..256)");

#define PVZ_EVENT_FIFO     256   /* events queued for user space */
#define PVZ_MAX_FW_HEAP    (256ull << 20)
#define PVZ_MAX_OSIDS_LIMIT 64   /* sanity bound for max_osids from the device */

enum { PVZ_VQ_HYPERCALL, PVZ_VQ_EVENT, PVZ_VQ_KICK, PVZ_NVQS };

/* Device config space, little-endian on the wire (spec section 4). */
struct virtio_pvz_config_le {
	__le32 magic, version, osid, status;
	__le64 bvnc;
	__le32 irq, priority;
	__le64 regs_ipa;
	__le32 regs_size, max_osids;
	__le64 fw_heap_ipa, fw_heap_size;
};
static_assert(sizeof(struct virtio_pvz_config_le) == VIRTIO_PVZ_CONFIG_SIZE);

/* One in-flight hypercall. Allocated per call so that a call abandoned after
 * a timeout can stay owned by the device until it returns the chain. */
struct pvz_call {
	struct completion done;
	u32 used_len;
	bool abandoned;
	u8 req[PVZ_RAW_MAX];
	u8 resp[PVZ_RAW_MAX];
};

struct pvz_event_le {
	__le32 type, code;
	__le64 value;
};

struct pvz_kick_le {
	__le32 write_offset, flags;
};

struct pvz_dev {
	struct kref ref;
	struct virtio_device *vdev;
	struct virtqueue *vqs[PVZ_NVQS];
	bool gone;              /* removed: every entry point answers -ENODEV */
	int index;
	char name[16];
	struct miscdevice misc;

	/* hypercallq: one call at a time; hvq_lock orders callback vs abandon */
	struct mutex call_lock;
	spinlock_t hvq_lock;
	u32 next_request_id;

	/* eventq */
	spinlock_t ev_lock;
	struct pvz_event_le *ev_bufs;
	unsigned int n_ev_bufs;
	struct pvz_event fifo[PVZ_EVENT_FIFO];
	unsigned int fifo_head, fifo_count;
	wait_queue_head_t ev_wait;

	/* kickq */
	struct mutex kick_mutex;
	spinlock_t kick_lock;

	/* config space, last validated copy */
	struct mutex cfg_lock;
	struct pvz_config cfg;
	struct work_struct cfg_work;

	/* firmware heap from guest RAM */
	struct mutex heap_lock;
	struct pvz_heap heap;
	bool heap_device_mapped;   /* a successful MAP names this heap */
	int heap_user_maps;

	atomic64_t events_received, events_dropped, events_malformed;
	atomic64_t kicks_posted, kicks_completed;
	atomic64_t calls, call_timeouts, call_protocol_errors;
	atomic_t config_changes, config_errors;
};

static DEFINE_IDA(pvz_ida);

static void pvz_release(struct kref *ref)
{
	struct pvz_dev *p = container_of(ref, struct pvz_dev, ref);

	if (p->heap.pages) {
		if (p->heap_device_mapped)
			/* The device may still write there: never give it back. */
			dev_warn(&p->vdev->dev, "leaking %llu-byte firmware heap at IPA %#llx: still mapped by the device\n",
				 p->heap.size, p->heap.ipa);
		else
			pvz_heap_free(&p->heap);
	}
	kfree(p->ev_bufs);
	ida_free(&pvz_ida, p->index);
	kfree(p);
}

/* ---- config space ---- */

static u32 pvz_cfg_generation(struct virtio_device *vdev)
{
	return vdev->config->generation ? vdev->config->generation(vdev) : 0;
}

static int pvz_read_config(struct pvz_dev *p, struct pvz_config *c)
{
	struct virtio_device *vdev = p->vdev;
	struct virtio_pvz_config_le raw;
	u32 *w = (u32 *)&raw;
	unsigned int gen, i, tries = 0;

	/* 32-bit reads only: every config read is a whole GET_CONFIG round trip
	 * to the daemon, byte reads would cost 64 of them. */
	do {
		if (++tries > 16) {
			dev_err(&vdev->dev, "config generation kept changing over %u reads\n", tries - 1);
			return -EIO;
		}
		gen = pvz_cfg_generation(vdev);
		for (i = 0; i < sizeof(raw) / 4; i++)
			vdev->config->get(vdev, i * 4, &w[i], 4);
	} while (gen != pvz_cfg_generation(vdev));

	c->magic = le32_to_cpu(raw.magic);
	c->version = le32_to_cpu(raw.version);
	c->osid = le32_to_cpu(raw.osid);
	c->status = le32_to_cpu(raw.status);
	c->bvnc = le64_to_cpu(raw.bvnc);
	c->irq = le32_to_cpu(raw.irq);
	c->priority = le32_to_cpu(raw.priority);
	c->regs_ipa = le64_to_cpu(raw.regs_ipa);
	c->regs_size = le32_to_cpu(raw.regs_size);
	c->max_osids = le32_to_cpu(raw.max_osids);
	c->fw_heap_ipa = le64_to_cpu(raw.fw_heap_ipa);
	c->fw_heap_size = le64_to_cpu(raw.fw_heap_size);

#define BAD(fmt, ...) do { dev_err(&vdev->dev, "config: " fmt "\n", ##__VA_ARGS__); return -EPROTO; } while (0)
	if (c->magic != VIRTIO_PVZ_MAGIC)
		BAD("magic %#x, expected %#x (\"PVZ1\")", c->magic, VIRTIO_PVZ_MAGIC);
	if (c->version != VIRTIO_PVZ_VERSION)
		BAD("version %u, this driver speaks %u", c->version, VIRTIO_PVZ_VERSION);
	if (c->max_osids < 2 || c->max_osids > PVZ_MAX_OSIDS_LIMIT)
		BAD("max_osids %u outside 2..%u", c->max_osids, PVZ_MAX_OSIDS_LIMIT);
	if (c->osid == 0 || c->osid >= c->max_osids)
		BAD("osid %u outside 1..%u (0 is the host)", c->osid, c->max_osids - 1);
	if (c->status & ~PVZ_STATUS_KNOWN_BITS)
		BAD("status %#x has bits outside %#x", c->status, PVZ_STATUS_KNOWN_BITS);
	if (c->regs_size != VIRTIO_PVZ_REGS_SIZE)
		BAD("regs_size %#x, expected %#x", c->regs_size, VIRTIO_PVZ_REGS_SIZE);
	if (!c->regs_ipa || (c->regs_ipa & (PAGE_SIZE - 1)) || c->regs_ipa + c->regs_size < c->regs_ipa)
		BAD("regs_ipa %#llx is zero, not 4 KiB aligned or wraps", c->regs_ipa);
	/* fw_heap_size is the size of the mapped heap: 0 while none is. The
	 * size the policy wants comes from GET_DEV_PHYS_HEAP_ADDR_SIZE. */
	if ((c->fw_heap_size & (PAGE_SIZE - 1)) || c->fw_heap_size > PVZ_MAX_FW_HEAP)
		BAD("fw_heap_size %#llx not 4 KiB aligned or above %#llx",
		    c->fw_heap_size, PVZ_MAX_FW_HEAP);
	if (!!c->fw_heap_size != !!c->fw_heap_ipa)
		BAD("fw_heap_size %#llx with fw_heap_ipa %#llx: both or neither must be 0",
		    c->fw_heap_size, c->fw_heap_ipa);
	if (c->fw_heap_ipa & (PAGE_SIZE - 1))
		BAD("fw_heap_ipa %#llx not 4 KiB aligned", c->fw_heap_ipa);
	if (c->fw_heap_ipa && c->fw_heap_ipa + c->fw_heap_size < c->fw_heap_ipa)
		BAD("fw_heap_ipa %#llx + size %#llx wraps", c->fw_heap_ipa, c->fw_heap_size);
	if (!!c->fw_heap_ipa != !!(c->status & PVZ_STATUS_FW_HEAP_MAPPED))
		BAD("fw_heap_ipa %#llx disagrees with status bit2 (status %#x)", c->fw_heap_ipa, c->status);
#undef BAD
	return 0;
}

/* Re-read config and keep the copy only if it validates. */
static int pvz_refresh_config(struct pvz_dev *p)
{
	struct pvz_config c;
	int err = pvz_read_config(p, &c);

	mutex_lock(&p->cfg_lock);
	if (!err) {
		if (p->cfg.osid && c.osid != p->cfg.osid) {
			/* The VM manager owns the OSID; a change under a running
			 * driver means a different guest identity: refuse it. */
			dev_err(&p->vdev->dev, "config: osid changed from %u to %u\n", p->cfg.osid, c.osid);
			err = -EPROTO;
		} else {
			memcpy(&p->cfg, &c, offsetof(struct pvz_config, features));
		}
	}
	if (err)
		atomic_inc(&p->config_errors);
	mutex_unlock(&p->cfg_lock);
	return err;
}

static void pvz_cfg_work(struct work_struct *work)
{
	struct pvz_dev *p = container_of(work, struct pvz_dev, cfg_work);

	if (READ_ONCE(p->gone))
		return;
	pvz_refresh_config(p);
	mutex_lock(&p->cfg_lock);
	/* An OnVmOffline or a restarted daemon unmaps the heap without a call
	 * from us; config space is the authority on what the device holds. */
	if (!(p->cfg.status & PVZ_STATUS_FW_HEAP_MAPPED)) {
		mutex_lock(&p->heap_lock);
		p->heap_device_mapped = false;
		mutex_unlock(&p->heap_lock);
	}
	mutex_unlock(&p->cfg_lock);
	wake_up_interruptible(&p->ev_wait);
}

static void pvz_config_changed(struct virtio_device *vdev)
{
	struct pvz_dev *p = vdev->priv;

	atomic_inc(&p->config_changes);
	/* Config reads are device round trips: not from interrupt context. */
	schedule_work(&p->cfg_work);
}

/* ---- hypercallq ---- */

static void pvz_hvq_done(struct virtqueue *vq)
{
	struct pvz_dev *p = vq->vdev->priv;
	struct pvz_call *call;
	unsigned long flags;
	unsigned int len;

	spin_lock_irqsave(&p->hvq_lock, flags);
	do {
		virtqueue_disable_cb(vq);
		while ((call = virtqueue_get_buf(vq, &len))) {
			if (call->abandoned) {
				kfree(call);
				continue;
			}
			call->used_len = len;
			complete(&call->done);
		}
	} while (!virtqueue_enable_cb(vq));
	spin_unlock_irqrestore(&p->hvq_lock, flags);
}

/* Put one request/response chain on hypercallq and wait for it. Caller holds
 * call_lock. Returns the used length in *used. */
static int pvz_transact(struct pvz_dev *p, const void *req, u32 req_len,
			void *resp, u32 resp_len, u32 *used)
{
	struct virtqueue *vq = p->vqs[PVZ_VQ_HYPERCALL];
	struct scatterlist out, in, *sgs[2];
	struct pvz_call *call;
	unsigned long flags;
	unsigned int nout = 0;
	bool notify;
	long left;
	int err;

	if (req_len > PVZ_RAW_MAX || !resp_len || resp_len > PVZ_RAW_MAX)
		return -EINVAL;
	call = kzalloc(sizeof(*call), GFP_KERNEL);
	if (!call)
		return -ENOMEM;
	init_completion(&call->done);
	memcpy(call->req, req, req_len);
	if (req_len) {
		sg_init_one(&out, call->req, req_len);
		sgs[nout++] = &out;
	}
	sg_init_one(&in, call->resp, resp_len);
	sgs[nout] = &in;

	spin_lock_irqsave(&p->hvq_lock, flags);
	err = virtqueue_add_sgs(vq, sgs, nout, 1, call, GFP_ATOMIC);
	notify = !err && virtqueue_kick_prepare(vq);
	spin_unlock_irqrestore(&p->hvq_lock, flags);
	if (err) {
		kfree(call);
		/* -ENOSPC: every descriptor is held by abandoned calls. */
		return virtqueue_is_broken(vq) ? -EIO : err;
	}
	if (notify)
		virtqueue_notify(vq);
	atomic64_inc(&p->calls);

	left = wait_for_completion_killable_timeout(&call->done,
			msecs_to_jiffies(clamp(call_timeout_ms, 1u, 600000u)));
	if (left <= 0) {
		spin_lock_irqsave(&p->hvq_lock, flags);
		if (!completion_done(&call->done)) {
			/* The device still owns the chain: it frees it when (if)
			 * it comes back, or remove() does after the reset. */
			call->abandoned = true;
			spin_unlock_irqrestore(&p->hvq_lock, flags);
			if (left == 0) {
				atomic64_inc(&p->call_timeouts);
				dev_warn_ratelimited(&p->vdev->dev, "hypercall timed out after %u ms\n",
						     call_timeout_ms);
			}
			if (virtqueue_is_broken(vq))
				return -EIO;
			return left == 0 ? -ETIMEDOUT : -EINTR;
		}
		spin_unlock_irqrestore(&p->hvq_lock, flags);
	}
	*used = call->used_len;
	memcpy(resp, call->resp, min(call->used_len, resp_len));
	kfree(call);
	if (*used > resp_len) {
		atomic64_inc(&p->call_protocol_errors);
		dev_err_ratelimited(&p->vdev->dev, "used length %u exceeds the %u writable bytes offered\n",
				    *used, resp_len);
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
 * One PVZ call: header + in bytes out, header + out bytes back. On a PVZ
 * status other than OK the output fields are zeroed (the device may write
 * only the header then).
 */
static int pvz_hypercall(struct pvz_dev *p, struct pvz_call_hdr *h, u32 fn,
			 const void *in, u32 in_len, void *out, u32 out_len)
{
	u8 req[PVZ_REQ_HDR_SIZE + 32], resp[PVZ_RESP_HDR_SIZE + 48];
	u32 used = 0, rlen = PVZ_RESP_HDR_SIZE + out_len, st, efn, eid, rsvd, id;
	struct device *d = &p->vdev->dev;
	int err;

	if (WARN_ON(in_len > sizeof(req) - PVZ_REQ_HDR_SIZE || rlen > sizeof(resp)))
		return -EINVAL;
	if (mutex_lock_killable(&p->call_lock))
		return -EINTR;
	if (p->gone) {
		mutex_unlock(&p->call_lock);
		return -ENODEV;
	}
	id = ++p->next_request_id;
	put_unaligned_le32(fn, req + 0);
	put_unaligned_le32(h->func_id, req + 4);
	put_unaligned_le32(h->dev_id, req + 8);
	put_unaligned_le32(id, req + 12);
	memcpy(req + PVZ_REQ_HDR_SIZE, in, in_len);
	err = pvz_transact(p, req, PVZ_REQ_HDR_SIZE + in_len, resp, rlen, &used);
	mutex_unlock(&p->call_lock);
	h->request_id = id;
	if (err)
		return err;

#define BAD(fmt, ...) do { atomic64_inc(&p->call_protocol_errors); \
	dev_err_ratelimited(d, "%s: " fmt "\n", pvz_fn_names[fn], ##__VA_ARGS__); return -EPROTO; } while (0)
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
	if (st == PVZ_OK)
		memcpy(out, resp + PVZ_RESP_HDR_SIZE, out_len);
	else
		memset(out, 0, out_len);
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

static void pvz_evq_done(struct virtqueue *vq)
{
	struct pvz_dev *p = vq->vdev->priv;
	struct pvz_event_le *b;
	unsigned long flags;
	unsigned int len;
	bool any = false;

	spin_lock_irqsave(&p->ev_lock, flags);
	do {
		virtqueue_disable_cb(vq);
		while ((b = virtqueue_get_buf(vq, &len))) {
			u32 type = le32_to_cpu(b->type);

			if (b < p->ev_bufs || b >= p->ev_bufs + p->n_ev_bufs) {
				/* Not a token we gave: the ring is corrupt. */
				dev_err_ratelimited(&vq->vdev->dev, "eventq returned an unknown buffer\n");
				continue;
			}
			if (len != sizeof(*b) || (type != PVZ_EVENT_FIRMWARE && type != PVZ_EVENT_VMM)) {
				atomic64_inc(&p->events_malformed);
				dev_warn_ratelimited(&vq->vdev->dev,
						     "event discarded: length %u (expected %zu), type %u (expected 1 or 2)\n",
						     len, sizeof(*b), type);
			} else {
				unsigned int slot;

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
				any = true;
			}
			if (pvz_post_event_buf(p, b))
				dev_err_ratelimited(&vq->vdev->dev, "cannot repost event buffer\n");
		}
	} while (!virtqueue_enable_cb(vq));
	virtqueue_kick(vq);
	spin_unlock_irqrestore(&p->ev_lock, flags);
	if (any)
		wake_up_interruptible(&p->ev_wait);
}

/* ---- kickq ---- */

static void pvz_kick_reclaim(struct pvz_dev *p)
{
	struct pvz_kick_le *k;
	unsigned int len;

	while ((k = virtqueue_get_buf(p->vqs[PVZ_VQ_KICK], &len))) {
		kfree(k);
		atomic64_inc(&p->kicks_completed);
	}
}

static void pvz_kickq_done(struct virtqueue *vq)
{
	struct pvz_dev *p = vq->vdev->priv;
	unsigned long flags;

	spin_lock_irqsave(&p->kick_lock, flags);
	pvz_kick_reclaim(p);
	spin_unlock_irqrestore(&p->kick_lock, flags);
}

static int pvz_kick(struct pvz_dev *p, const struct pvz_kick *u)
{
	struct virtqueue *vq = p->vqs[PVZ_VQ_KICK];
	struct pvz_kick_le *k;
	struct scatterlist sg;
	unsigned long flags;
	bool notify;
	int err;

	if (u->write_offset % PVZ_CMD_SIZE) {
		dev_dbg(&p->vdev->dev, "kick: write_offset %u not a multiple of %u\n",
			u->write_offset, PVZ_CMD_SIZE);
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
	mutex_lock(&p->kick_mutex);
	if (p->gone) {
		mutex_unlock(&p->kick_mutex);
		kfree(k);
		return -ENODEV;
	}
	spin_lock_irqsave(&p->kick_lock, flags);
	pvz_kick_reclaim(p);
	err = virtqueue_add_outbuf(vq, &sg, 1, k, GFP_ATOMIC);
	notify = !err && virtqueue_kick_prepare(vq);
	spin_unlock_irqrestore(&p->kick_lock, flags);
	mutex_unlock(&p->kick_mutex);
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

/* ---- file operations ---- */

static int pvz_open(struct inode *inode, struct file *f)
{
	struct pvz_dev *p = container_of(f->private_data, struct pvz_dev, misc);

	kref_get(&p->ref);
	f->private_data = p;
	return nonseekable_open(inode, f);
}

static int pvz_release_file(struct inode *inode, struct file *f)
{
	struct pvz_dev *p = f->private_data;

	kref_put(&p->ref, pvz_release);
	return 0;
}

static ssize_t pvz_read(struct file *f, char __user *buf, size_t len, loff_t *off)
{
	struct pvz_dev *p = f->private_data;
	struct pvz_event ev[16];
	unsigned int n = 0, want;
	unsigned long flags;
	int err;

	if (len < sizeof(struct pvz_event))
		return -EINVAL;
	want = min_t(size_t, len / sizeof(struct pvz_event), ARRAY_SIZE(ev));
	for (;;) {
		spin_lock_irqsave(&p->ev_lock, flags);
		while (n < want && p->fifo_count) {
			ev[n++] = p->fifo[p->fifo_head];
			p->fifo_head = (p->fifo_head + 1) % PVZ_EVENT_FIFO;
			p->fifo_count--;
		}
		spin_unlock_irqrestore(&p->ev_lock, flags);
		if (n)
			break;
		if (READ_ONCE(p->gone))
			return -ENODEV;
		if (f->f_flags & O_NONBLOCK)
			return -EAGAIN;
		err = wait_event_interruptible(p->ev_wait,
					       READ_ONCE(p->fifo_count) || READ_ONCE(p->gone));
		if (err)
			return err;
	}
	if (copy_to_user(buf, ev, n * sizeof(ev[0])))
		return -EFAULT;
	return n * sizeof(ev[0]);
}

static __poll_t pvz_poll(struct file *f, poll_table *wait)
{
	struct pvz_dev *p = f->private_data;
	__poll_t mask = 0;

	poll_wait(f, &p->ev_wait, wait);
	if (READ_ONCE(p->fifo_count))
		mask |= EPOLLIN | EPOLLRDNORM;
	if (READ_ONCE(p->gone))
		mask |= EPOLLHUP | EPOLLERR;
	return mask;
}

/* A heap mapping may be split by a partial munmap: every piece below the
 * register window counts as a user of the heap. */
static bool pvz_vma_is_heap(struct vm_area_struct *vma)
{
	return vma->vm_pgoff < (PVZ_MMAP_REGS >> PAGE_SHIFT);
}

static void pvz_vma_open(struct vm_area_struct *vma)
{
	struct pvz_dev *p = vma->vm_private_data;

	kref_get(&p->ref);
	if (pvz_vma_is_heap(vma)) {
		mutex_lock(&p->heap_lock);
		p->heap_user_maps++;
		mutex_unlock(&p->heap_lock);
	}
}

static void pvz_vma_close(struct vm_area_struct *vma)
{
	struct pvz_dev *p = vma->vm_private_data;

	if (pvz_vma_is_heap(vma)) {
		mutex_lock(&p->heap_lock);
		p->heap_user_maps--;
		mutex_unlock(&p->heap_lock);
	}
	kref_put(&p->ref, pvz_release);
}

static const struct vm_operations_struct pvz_vm_ops = {
	.open = pvz_vma_open,
	.close = pvz_vma_close,
};

static int pvz_mmap(struct file *f, struct vm_area_struct *vma)
{
	struct pvz_dev *p = f->private_data;
	unsigned long len = vma->vm_end - vma->vm_start;
	unsigned long pfn;
	int err;

	if (vma->vm_pgoff == 0) {
		mutex_lock(&p->heap_lock);
		if (!p->heap.pages) {
			mutex_unlock(&p->heap_lock);
			return -ENOMEM;
		}
		if (len > p->heap.size) {
			mutex_unlock(&p->heap_lock);
			return -EINVAL;
		}
		pfn = PHYS_PFN(p->heap.ipa);
		p->heap_user_maps++;
		mutex_unlock(&p->heap_lock);
	} else if (vma->vm_pgoff == PVZ_MMAP_REGS >> PAGE_SHIFT) {
		/* The bank is a mirror the daemon rewrites: guest stores would
		 * be lost, so only reads are offered. */
		if (vma->vm_flags & VM_WRITE)
			return -EPERM;
		vma->vm_flags &= ~VM_MAYWRITE;
		mutex_lock(&p->cfg_lock);
		if (len > p->cfg.regs_size) {
			mutex_unlock(&p->cfg_lock);
			return -EINVAL;
		}
		pfn = PHYS_PFN(p->cfg.regs_ipa);
		mutex_unlock(&p->cfg_lock);
	} else {
		return -EINVAL;
	}
	vma->vm_flags |= VM_DONTEXPAND | VM_DONTDUMP | VM_DONTCOPY;
	vma->vm_private_data = p;
	vma->vm_ops = &pvz_vm_ops;
	kref_get(&p->ref);
	err = remap_pfn_range(vma, vma->vm_start, pfn, len, vma->vm_page_prot);
	if (err) {
		/* close() is not called for a failed mmap */
		if (vma->vm_pgoff == 0) {
			mutex_lock(&p->heap_lock);
			p->heap_user_maps--;
			mutex_unlock(&p->heap_lock);
		}
		kref_put(&p->ref, pvz_release);
	}
	return err;
}

static long pvz_ioctl_heap_alloc(struct pvz_dev *p, struct pvz_fw_heap *h)
{
	u64 size = h->size;
	int err;

	if (!size) {
		/* Ask the host's policy rather than assume 32 MiB. */
		struct pvz_call_hdr h = {};
		u8 in[4], out[16];

		put_unaligned_le32(PVZ_HEAP_FW_LOCAL, in);
		err = pvz_hypercall(p, &h, PVZ_FN_GET_DEV_PHYS_HEAP_ADDR_SIZE, in, 4, out, 16);
		if (err)
			return err;
		if (h.status != PVZ_OK) {
			dev_dbg(&p->vdev->dev, "GET_DEV_PHYS_HEAP_ADDR_SIZE(FW_LOCAL): status %u\n", h.status);
			return -EIO;
		}
		size = get_unaligned_le64(out);
	}
	if (!size || (size & (PAGE_SIZE - 1)) || size > PVZ_MAX_FW_HEAP) {
		dev_dbg(&p->vdev->dev, "heap size %#llx: must be a non-zero multiple of 4 KiB up to %#llx\n",
			size, PVZ_MAX_FW_HEAP);
		return -EINVAL;
	}
	mutex_lock(&p->heap_lock);
	if (p->heap.pages)
		err = -EEXIST;
	else
		err = pvz_heap_alloc(&p->heap, size);
	if (!err) {
		h->size = p->heap.size;
		h->ipa = p->heap.ipa;
	}
	mutex_unlock(&p->heap_lock);
	return err;
}

static long pvz_ioctl_heap_free(struct pvz_dev *p)
{
	int err = 0;

	mutex_lock(&p->heap_lock);
	if (!p->heap.pages)
		err = -ENOENT;
	else if (p->heap_device_mapped || p->heap_user_maps)
		err = -EBUSY;   /* the firmware or a process still uses it */
	else
		pvz_heap_free(&p->heap);
	mutex_unlock(&p->heap_lock);
	return err;
}

static long pvz_ioctl(struct file *f, unsigned int cmd, unsigned long arg)
{
	struct pvz_dev *p = f->private_data;
	void __user *up = (void __user *)arg;
	long err;

	if (READ_ONCE(p->gone))
		return -ENODEV;

	switch (cmd) {
	case PVZ_IOC_GET_CONFIG: {
		struct pvz_config c;

		/* Fresh status for the caller; a failed re-read returns the
		 * last good copy and counts an error. */
		pvz_refresh_config(p);
		mutex_lock(&p->cfg_lock);
		c = p->cfg;
		mutex_unlock(&p->cfg_lock);
		c.features = p->vdev->features;
		c.config_changes = atomic_read(&p->config_changes);
		c.config_errors = atomic_read(&p->config_errors);
		c.events_received = atomic64_read(&p->events_received);
		c.events_dropped = atomic64_read(&p->events_dropped);
		c.events_malformed = atomic64_read(&p->events_malformed);
		c.kicks_posted = atomic64_read(&p->kicks_posted);
		c.kicks_completed = atomic64_read(&p->kicks_completed);
		c.calls = atomic64_read(&p->calls);
		c.call_timeouts = atomic64_read(&p->call_timeouts);
		c.call_protocol_errors = atomic64_read(&p->call_protocol_errors);
		return copy_to_user(up, &c, sizeof(c)) ? -EFAULT : 0;
	}
	case PVZ_IOC_CREATE_DEV_CONFIG: {
		struct pvz_dev_config a;
		u8 out[16];

		if (copy_from_user(&a, up, sizeof(a)))
			return -EFAULT;
		err = pvz_hypercall(p, &a.hdr, PVZ_FN_CREATE_DEV_CONFIG, NULL, 0, out, 16);
		if (err)
			return err;
		a.irq = get_unaligned_le32(out);
		a.regs_size = get_unaligned_le32(out + 4);
		a.regs_pbase = get_unaligned_le64(out + 8);
		if (a.hdr.status == PVZ_OK) {
			struct pvz_config c;

			mutex_lock(&p->cfg_lock);
			c = p->cfg;
			mutex_unlock(&p->cfg_lock);
			/* regs_pbase and regs_size must be what config space
			 * says: a driver maps the bank from either. */
			if (a.regs_size != c.regs_size || a.regs_pbase != c.regs_ipa || a.irq != c.irq) {
				atomic64_inc(&p->call_protocol_errors);
				dev_err_ratelimited(&p->vdev->dev,
					"CREATE_DEV_CONFIG: irq %u regs %#llx+%#x disagree with config irq %u regs %#llx+%#x\n",
					a.irq, a.regs_pbase, a.regs_size, c.irq, c.regs_ipa, c.regs_size);
				return -EPROTO;
			}
		}
		return copy_to_user(up, &a, sizeof(a)) ? -EFAULT : 0;
	}
	case PVZ_IOC_DESTROY_DEV_CONFIG:
	case PVZ_IOC_DESTROY_DEV_PHYS_HEAPS:
	case PVZ_IOC_UNMAP_DEV_PHYS_HEAP: {
		struct pvz_call_hdr a;
		u32 fn = cmd == PVZ_IOC_DESTROY_DEV_CONFIG ? PVZ_FN_DESTROY_DEV_CONFIG :
			 cmd == PVZ_IOC_DESTROY_DEV_PHYS_HEAPS ? PVZ_FN_DESTROY_DEV_PHYS_HEAPS :
			 PVZ_FN_UNMAP_DEV_PHYS_HEAP;

		if (copy_from_user(&a, up, sizeof(a)))
			return -EFAULT;
		err = pvz_hypercall(p, &a, fn, NULL, 0, NULL, 0);
		if (err)
			return err;
		if (fn == PVZ_FN_UNMAP_DEV_PHYS_HEAP && a.status == PVZ_OK) {
			mutex_lock(&p->heap_lock);
			p->heap_device_mapped = false;
			mutex_unlock(&p->heap_lock);
		}
		return copy_to_user(up, &a, sizeof(a)) ? -EFAULT : 0;
	}
	case PVZ_IOC_CREATE_DEV_PHYS_HEAPS: {
		struct pvz_phys_heaps a;
		u8 out[40];

		if (copy_from_user(&a, up, sizeof(a)))
			return -EFAULT;
		err = pvz_hypercall(p, &a.hdr, PVZ_FN_CREATE_DEV_PHYS_HEAPS, NULL, 0, out, 40);
		if (err)
			return err;
		a.type = get_unaligned_le32(out);
		a.pad = get_unaligned_le32(out + 4);
		a.fw_size = get_unaligned_le64(out + 8);
		a.fw_paddr = get_unaligned_le64(out + 16);
		a.gpu_size = get_unaligned_le64(out + 24);
		a.gpu_paddr = get_unaligned_le64(out + 32);
		if (a.hdr.status == PVZ_OK &&
		    (a.type < PVZ_HEAP_TYPE_UMA || a.type > PVZ_HEAP_TYPE_DMA || a.pad ||
		     ((a.fw_paddr | a.fw_size | a.gpu_paddr | a.gpu_size) & (PAGE_SIZE - 1)) ||
		     a.fw_paddr + a.fw_size < a.fw_paddr || a.gpu_paddr + a.gpu_size < a.gpu_paddr)) {
			atomic64_inc(&p->call_protocol_errors);
			dev_err_ratelimited(&p->vdev->dev,
				"CREATE_DEV_PHYS_HEAPS: type %u (1..3) pad %#x (0) fw %#llx+%#llx gpu %#llx+%#llx (4 KiB aligned, no wrap)\n",
				a.type, a.pad, a.fw_paddr, a.fw_size, a.gpu_paddr, a.gpu_size);
			return -EPROTO;
		}
		return copy_to_user(up, &a, sizeof(a)) ? -EFAULT : 0;
	}
	case PVZ_IOC_MAP_DEV_PHYS_HEAP: {
		struct pvz_map_heap a;
		u8 in[16];

		if (copy_from_user(&a, up, sizeof(a)))
			return -EFAULT;
		put_unaligned_le64(a.size, in);
		put_unaligned_le64(a.paddr, in + 8);
		err = pvz_hypercall(p, &a.hdr, PVZ_FN_MAP_DEV_PHYS_HEAP, in, 16, NULL, 0);
		if (err)
			return err;
		if (a.hdr.status == PVZ_OK) {
			/* Whatever range the device accepted may now be written by
			 * the firmware: if it is ours, pin it until UNMAP. */
			mutex_lock(&p->heap_lock);
			if (p->heap.pages && a.paddr < p->heap.ipa + p->heap.size &&
			    p->heap.ipa < a.paddr + a.size)
				p->heap_device_mapped = true;
			mutex_unlock(&p->heap_lock);
		}
		return copy_to_user(up, &a, sizeof(a)) ? -EFAULT : 0;
	}
	case PVZ_IOC_GET_HEAP_ORIGIN: {
		struct pvz_heap_origin a;
		u8 in[4], out[4];

		if (copy_from_user(&a, up, sizeof(a)))
			return -EFAULT;
		put_unaligned_le32(a.heap, in);
		err = pvz_hypercall(p, &a.hdr, PVZ_FN_GET_DEV_PHYS_HEAP_ORIGIN, in, 4, out, 4);
		if (err)
			return err;
		a.origin = get_unaligned_le32(out);
		if (a.hdr.status == PVZ_OK && a.origin > PVZ_ORIGIN_GUEST) {
			atomic64_inc(&p->call_protocol_errors);
			dev_err_ratelimited(&p->vdev->dev, "GET_DEV_PHYS_HEAP_ORIGIN: origin %u outside 0..1\n",
					    a.origin);
			return -EPROTO;
		}
		return copy_to_user(up, &a, sizeof(a)) ? -EFAULT : 0;
	}
	case PVZ_IOC_GET_HEAP_ADDR_SIZE: {
		struct pvz_heap_addr_size a;
		u8 in[4], out[16];

		if (copy_from_user(&a, up, sizeof(a)))
			return -EFAULT;
		put_unaligned_le32(a.heap, in);
		err = pvz_hypercall(p, &a.hdr, PVZ_FN_GET_DEV_PHYS_HEAP_ADDR_SIZE, in, 4, out, 16);
		if (err)
			return err;
		a.size = get_unaligned_le64(out);
		a.addr = get_unaligned_le64(out + 8);
		if (a.hdr.status == PVZ_OK && a.addr + a.size < a.addr) {
			atomic64_inc(&p->call_protocol_errors);
			dev_err_ratelimited(&p->vdev->dev, "GET_DEV_PHYS_HEAP_ADDR_SIZE: %#llx+%#llx wraps\n",
					    a.addr, a.size);
			return -EPROTO;
		}
		return copy_to_user(up, &a, sizeof(a)) ? -EFAULT : 0;
	}
	case PVZ_IOC_READ_REG:
	case PVZ_IOC_WRITE_REG: {
		struct pvz_reg a;
		u8 in[8], out[4];
		bool rd = cmd == PVZ_IOC_READ_REG;

		if (copy_from_user(&a, up, sizeof(a)))
			return -EFAULT;
		put_unaligned_le32(a.offset, in);
		put_unaligned_le32(a.value, in + 4);
		err = pvz_hypercall(p, &a.hdr, rd ? PVZ_FN_READ_REG : PVZ_FN_WRITE_REG,
				    in, rd ? 4 : 8, out, rd ? 4 : 0);
		if (err)
			return err;
		if (rd)
			a.value = get_unaligned_le32(out);
		return copy_to_user(up, &a, sizeof(a)) ? -EFAULT : 0;
	}
	case PVZ_IOC_RAW: {
		struct pvz_raw *a;
		u32 used = 0;

		a = kmalloc(sizeof(*a), GFP_KERNEL);
		if (!a)
			return -ENOMEM;
		if (copy_from_user(a, up, sizeof(*a))) {
			kfree(a);
			return -EFAULT;
		}
		if (a->req_len > PVZ_RAW_MAX || !a->resp_len || a->resp_len > PVZ_RAW_MAX) {
			kfree(a);
			return -EINVAL;
		}
		err = mutex_lock_killable(&p->call_lock);
		if (!err) {
			err = p->gone ? -ENODEV :
			      pvz_transact(p, a->req, a->req_len, a->resp, a->resp_len, &used);
			mutex_unlock(&p->call_lock);
		} else {
			err = -EINTR;
		}
		if (!err) {
			a->used_len = used;
			if (copy_to_user(up, a, sizeof(*a)))
				err = -EFAULT;
		}
		kfree(a);
		return err;
	}
	case PVZ_IOC_KICK: {
		struct pvz_kick a;

		if (copy_from_user(&a, up, sizeof(a)))
			return -EFAULT;
		return pvz_kick(p, &a);
	}
	case PVZ_IOC_ALLOC_FW_HEAP: {
		struct pvz_fw_heap a;

		if (copy_from_user(&a, up, sizeof(a)))
			return -EFAULT;
		err = pvz_ioctl_heap_alloc(p, &a);
		if (err)
			return err;
		return copy_to_user(up, &a, sizeof(a)) ? -EFAULT : 0;
	}
	case PVZ_IOC_FREE_FW_HEAP:
		return pvz_ioctl_heap_free(p);
	}
	return -ENOTTY;
}

static const struct file_operations pvz_fops = {
	.owner = THIS_MODULE,
	.open = pvz_open,
	.release = pvz_release_file,
	.read = pvz_read,
	.poll = pvz_poll,
	.mmap = pvz_mmap,
	.unlocked_ioctl = pvz_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
	.llseek = no_llseek,
};

/* ---- probe / remove ---- */

static int pvz_probe(struct virtio_device *vdev)
{
	static const char *const names[PVZ_NVQS] = { "hypercallq", "eventq", "kickq" };
	vq_callback_t *cbs[PVZ_NVQS] = { pvz_hvq_done, pvz_evq_done, pvz_kickq_done };
	struct pvz_dev *p;
	unsigned int i;
	int err;

	if (!vdev->config->get) {
		dev_err(&vdev->dev, "transport has no config space access\n");
		return -EINVAL;
	}
	if (event_buffers < 1 || event_buffers > 256) {
		dev_err(&vdev->dev, "event_buffers=%u outside 1..256\n", event_buffers);
		return -EINVAL;
	}
	p = kzalloc(sizeof(*p), GFP_KERNEL);
	if (!p)
		return -ENOMEM;
	kref_init(&p->ref);
	p->vdev = vdev;
	vdev->priv = p;
	mutex_init(&p->call_lock);
	spin_lock_init(&p->hvq_lock);
	spin_lock_init(&p->ev_lock);
	init_waitqueue_head(&p->ev_wait);
	mutex_init(&p->kick_mutex);
	spin_lock_init(&p->kick_lock);
	mutex_init(&p->cfg_lock);
	mutex_init(&p->heap_lock);
	INIT_WORK(&p->cfg_work, pvz_cfg_work);
	p->index = ida_alloc(&pvz_ida, GFP_KERNEL);
	if (p->index < 0) {
		err = p->index;
		kfree(p);
		return err;
	}

	err = pvz_read_config(p, &p->cfg);
	if (err)
		goto err_free;

	err = virtio_find_vqs(vdev, PVZ_NVQS, p->vqs, cbs, names, NULL);
	if (err) {
		dev_err(&vdev->dev, "cannot find the %d virtqueues: %d\n", PVZ_NVQS, err);
		goto err_free;
	}
	p->n_ev_bufs = min(event_buffers, virtqueue_get_vring_size(p->vqs[PVZ_VQ_EVENT]));
	p->ev_bufs = kcalloc(p->n_ev_bufs, sizeof(*p->ev_bufs), GFP_KERNEL);
	if (!p->ev_bufs) {
		err = -ENOMEM;
		goto err_vqs;
	}

	virtio_device_ready(vdev);

	spin_lock_irq(&p->ev_lock);
	for (i = 0; i < p->n_ev_bufs; i++) {
		err = pvz_post_event_buf(p, &p->ev_bufs[i]);
		if (err)
			break;
	}
	virtqueue_kick(p->vqs[PVZ_VQ_EVENT]);
	spin_unlock_irq(&p->ev_lock);
	if (err) {
		dev_err(&vdev->dev, "cannot post event buffer %u: %d\n", i, err);
		goto err_reset;
	}

	snprintf(p->name, sizeof(p->name), p->index ? "pvz%d" : "pvz", p->index);
	p->misc.minor = MISC_DYNAMIC_MINOR;
	p->misc.name = p->name;
	p->misc.fops = &pvz_fops;
	p->misc.mode = 0600;
	err = misc_register(&p->misc);
	if (err)
		goto err_reset;

	dev_info(&vdev->dev, "/dev/%s: osid %u of %u, bvnc %#llx, regs %#llx+%#x, fw heap %#llx bytes, status %#x, features %#llx\n",
		 p->name, p->cfg.osid, p->cfg.max_osids, p->cfg.bvnc, p->cfg.regs_ipa,
		 p->cfg.regs_size, p->cfg.fw_heap_size, p->cfg.status, vdev->features);
	return 0;

err_reset:
	virtio_reset_device(vdev);
err_vqs:
	vdev->config->del_vqs(vdev);
err_free:
	vdev->priv = NULL;
	kref_put(&p->ref, pvz_release);
	return err;
}

static void pvz_remove(struct virtio_device *vdev)
{
	struct pvz_dev *p = vdev->priv;
	struct pvz_call_hdr h = {};
	struct pvz_call *call;
	struct pvz_kick_le *k;

	misc_deregister(&p->misc);
	cancel_work_sync(&p->cfg_work);

	/* Take the firmware heap back from the device before the reset, so it
	 * can be returned to the page allocator. */
	mutex_lock(&p->heap_lock);
	if (p->heap_device_mapped) {
		mutex_unlock(&p->heap_lock);
		if (!pvz_hypercall(p, &h, PVZ_FN_UNMAP_DEV_PHYS_HEAP, NULL, 0, NULL, 0) &&
		    (h.status == PVZ_OK || h.status == PVZ_NOT_FOUND)) {
			mutex_lock(&p->heap_lock);
			p->heap_device_mapped = false;
			mutex_unlock(&p->heap_lock);
		}
	} else {
		mutex_unlock(&p->heap_lock);
	}

	mutex_lock(&p->call_lock);
	mutex_lock(&p->kick_mutex);
	WRITE_ONCE(p->gone, true);
	virtio_reset_device(vdev);
	mutex_unlock(&p->kick_mutex);
	mutex_unlock(&p->call_lock);
	wake_up_interruptible(&p->ev_wait);

	/* After the reset the device owns nothing: free abandoned calls and
	 * unreturned doorbells. Event buffers live in ev_bufs. */
	while ((call = virtqueue_detach_unused_buf(p->vqs[PVZ_VQ_HYPERCALL])))
		kfree(call);
	while ((k = virtqueue_detach_unused_buf(p->vqs[PVZ_VQ_KICK])))
		kfree(k);
	while (virtqueue_detach_unused_buf(p->vqs[PVZ_VQ_EVENT]))
		;
	vdev->config->del_vqs(vdev);
	kref_put(&p->ref, pvz_release);
}

static unsigned int pvz_features[] = {
	VIRTIO_PVZ_F_HOST_HEAPS,
	VIRTIO_PVZ_F_FIRMWARE,
};

static const struct virtio_device_id pvz_id_table[] = {
	{ VIRTIO_PVZ_DEVICE_ID, VIRTIO_DEV_ANY_ID },
	{ 0 },
};
MODULE_DEVICE_TABLE(virtio, pvz_id_table);

static struct virtio_driver pvz_driver = {
	.driver.name = KBUILD_MODNAME,
	.driver.owner = THIS_MODULE,
	.id_table = pvz_id_table,
	.feature_table = pvz_features,
	.feature_table_size = ARRAY_SIZE(pvz_features),
	.probe = pvz_probe,
	.remove = pvz_remove,
	.config_changed = pvz_config_changed,
};

module_virtio_driver(pvz_driver);
MODULE_DESCRIPTION("virtio-pvz: PowerVR para-virtualization guest connection");
MODULE_LICENSE("GPL");
