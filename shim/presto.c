// SPDX-License-Identifier: GPL-2.0
/*
 * Presto: forward the VFS events of one directory tree to userspace.
 *
 * Each open file of /dev/presto is a "reader".  A reader arms one volume
 * (a directory) with PRESTO_IOC_ARM; the module then puts an fsnotify
 * superblock mark on the volume's filesystem, keeps the events whose
 * objects lie below the volume root (but not below <root>/.replicator) and
 * appends them, as binary records (see presto_abi.h), to a ring buffer of
 * fixed size owned by the reader.  read() drains the ring, poll() waits
 * for it.  A full ring never blocks the filesystem: the event is counted
 * as lost and the reader later receives one OVERFLOW record carrying the
 * count, after which it must rescan the volume.
 *
 * Locking rules
 * -------------
 * r->arm_mutex   serialises PRESTO_IOC_ARM, PRESTO_IOC_DISARM and release.
 *                It guards r->mark, r->root and r->arm_flags.  Those are
 *                set before the fsnotify mark is attached and cleared only
 *                after the mark is destroyed and fsnotify_wait_marks_destroyed()
 *                returned, so the event handler reads them without a lock.
 * r->read_mutex  serialises consumers: read() holds it while it copies
 *                records out of the ring (with r->lock dropped); disarm takes
 *                it before freeing the ring.  Never held while sleeping for
 *                events.
 * r->lock        spinlock protecting the ring (head, tail, contents beyond
 *                tail), seq, the loss counters, the write table and
 *                the path scratch buffer.  Taken by the fsnotify handler
 *                (process context: fsnotify is never called from interrupt
 *                context), by read(), poll() and ioctl().  Nested inside it
 *                the handler takes rename_lock (read side) and one
 *                dentry->d_lock at a time, never the other way round.
 *                Nothing allocates or sleeps while it is held.
 *
 * Order: arm_mutex -> read_mutex -> lock -> rename_lock -> d_lock.
 *
 * The handler runs synchronously in the task doing the filesystem
 * operation, often with the parent directory's i_rwsem held.  It does no
 * filesystem work and no allocation: it resolves names from the dcache,
 * copies the record into the preallocated ring and wakes the reader.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/version.h>
#include <linux/module.h>
#include <linux/miscdevice.h>
#include <linux/fs.h>
#include <linux/fsnotify_backend.h>
#include <linux/namei.h>
#include <linux/dcache.h>
#include <linux/path.h>
#include <linux/slab.h>
#include <linux/vmalloc.h>
#include <linux/poll.h>
#include <linux/uaccess.h>
#include <linux/wait.h>
#include <linux/mutex.h>
#include <linux/spinlock.h>
#include <linux/seqlock.h>
#include <linux/timekeeping.h>
#include <linux/log2.h>
#include <linux/hash.h>
#include <linux/iversion.h>
#include <linux/magic.h>
#include <linux/capability.h>
#include <linux/atomic.h>

#include "presto_abi.h"

#ifdef __BIG_ENDIAN
#error "the presto ABI is little-endian; this module does not byte-swap"
#endif

#define PRESTO_PRIVATE_DIR	".replicator"
#define PRESTO_WTAB_BITS	10	/* 1024 slots of files open for writing */
#define PRESTO_WTAB_SIZE	BIT(PRESTO_WTAB_BITS)
#define PRESTO_WTAB_LIMIT	(PRESTO_WTAB_SIZE * 3 / 4)
#define PRESTO_SCRATCH		(2 * PATH_MAX)

/* Where a dentry lies relative to the armed volume. */
enum presto_where {
	PRESTO_OUTSIDE = 0,
	PRESTO_INSIDE,
	PRESTO_PRIVATE,		/* below <root>/.replicator (or that dir itself) */
};

struct presto_reader;

/* A file open for writing, see "write table" below. */
struct presto_wfile {
	u64 key;		/* presto_key(inode); 0: empty slot */
	u64 stamp;		/* i_version, or ctime in ns, at entry */
	s64 clock;		/* realtime minus monotonic, at entry */
	u32 flags;		/* PRESTO_WF_* */
};

struct presto_mark {
	struct fsnotify_mark fsn;
	struct presto_reader *reader;
};

struct presto_reader {
	struct mutex arm_mutex;		/* arm/disarm/release, see top */
	struct mutex read_mutex;	/* one consumer copying at a time */
	wait_queue_head_t wq;
	struct fsnotify_group *group;

	/* [arm_mutex; stable while the mark is attached] */
	struct presto_mark *mark;
	struct path root;
	u32 arm_flags;

	spinlock_t lock;		/* ring, counters, tables: see top */
	/* [lock] */
	bool armed;
	u8 *ring;
	u32 size;		/* ring bytes, power of two */
	u64 head;		/* bytes ever queued */
	u64 tail;		/* bytes ever consumed */
	u64 seq;		/* last sequence number used */
	u64 queued;
	u64 lost_total;
	u64 pending_lost;	/* lost since the last OVERFLOW record */
	struct presto_wfile *wtab;	/* files open for writing */
	u32 wtab_used;
	u64 skip_key;		/* last inode written outside (MODIFY cache) */
	u64 in_key;		/* last file created inside (open cache) */
	char *scratch;		/* PRESTO_SCRATCH bytes for path building */
};

static atomic_t presto_live_marks = ATOMIC_INIT(0);

/* ---- ring ------------------------------------------------------------ */

static inline u32 presto_rec_len(u32 len1, u32 len2)
{
	u32 len = PRESTO_EVENT_HDR_LEN + len1 + 1;

	if (len2)
		len += len2 + 1;
	return ALIGN(len, PRESTO_REC_ALIGN);
}

static void presto_ring_put(struct presto_reader *r, u64 pos,
			    const void *src, u32 len)
{
	u32 off = pos & (r->size - 1);
	u32 first = min(len, r->size - off);

	memcpy(r->ring + off, src, first);
	if (len > first)
		memcpy(r->ring, (const u8 *)src + first, len - first);
}

static void presto_ring_zero(struct presto_reader *r, u64 pos, u32 len)
{
	static const u8 zeros[PRESTO_REC_ALIGN];

	presto_ring_put(r, pos, zeros, len);
}

static inline u32 presto_free_locked(struct presto_reader *r)
{
	lockdep_assert_held(&r->lock);
	return r->size - (u32)(r->head - r->tail);
}

/* Fill a record header; every field, so no stale ring byte leaks.  [lock] */
static void presto_header_locked(struct presto_reader *r,
				 struct presto_event *ev, u32 rec_len, u8 type,
				 u16 flags, u16 mode, u64 ino, u64 aux,
				 u16 len1, u16 len2)
{
	lockdep_assert_held(&r->lock);
	ev->rec_len = rec_len;
	ev->magic = PRESTO_MAGIC;
	ev->version = PRESTO_ABI_VERSION;
	ev->type = type;
	ev->seq = ++r->seq;
	ev->ino = ino;
	ev->time_ns = ktime_get_real_ns();
	ev->flags = flags;
	ev->mode = mode;
	ev->path_len = len1;
	ev->path2_len = len2;
	ev->aux = aux;
}

/* Append one record; the caller checked that it fits.  [lock] */
static void presto_write_locked(struct presto_reader *r, u8 type, u16 flags,
				u16 mode, u64 ino, u64 aux,
				const char *p1, u16 len1,
				const char *p2, u16 len2)
{
	u32 rec_len = presto_rec_len(len1, len2);
	u32 off = r->head & (r->size - 1);
	struct presto_event ev;
	u64 pos = r->head;
	u8 *p, *end;

	lockdep_assert_held(&r->lock);
	/* Never over unread records: a caller that did not check is a bug. */
	if (WARN_ON_ONCE(rec_len > presto_free_locked(r)))
		return;

	if (off + rec_len <= r->size) {
		/* Nearly always: the record does not wrap; build it in place. */
		p = r->ring + off;
		end = p + rec_len;
		presto_header_locked(r, (struct presto_event *)p, rec_len, type,
				     flags, mode, ino, aux, len1, len2);
		p += PRESTO_EVENT_HDR_LEN;
		memcpy(p, p1, len1);
		p += len1;
		*p++ = 0;
		if (len2) {
			memcpy(p, p2, len2);
			p += len2;
			*p++ = 0;
		}
		memset(p, 0, end - p);
	} else {
		presto_header_locked(r, &ev, rec_len, type, flags, mode, ino,
				     aux, len1, len2);
		presto_ring_put(r, pos, &ev, sizeof(ev));
		pos += sizeof(ev);
		presto_ring_put(r, pos, p1, len1);
		pos += len1;
		presto_ring_zero(r, pos, 1);
		pos += 1;
		if (len2) {
			presto_ring_put(r, pos, p2, len2);
			pos += len2;
			presto_ring_zero(r, pos, 1);
			pos += 1;
		}
		presto_ring_zero(r, pos, r->head + rec_len - pos);
	}
	r->head += rec_len;
	r->queued++;
}

/*
 * Queue the pending OVERFLOW record if it fits.  Event writers keep one
 * OVERFLOW record's worth of ring (presto_rec_len(0, 0)) free, but a read
 * that flushed it and then failed (a buffer too small for the next record, a
 * bad user pointer) consumed nothing: the loss then stays pending until the
 * reader has made room, and is reported, exactly, after what it read.  [lock]
 */
static void presto_flush_overflow_locked(struct presto_reader *r)
{
	lockdep_assert_held(&r->lock);
	if (!r->pending_lost || presto_free_locked(r) < presto_rec_len(0, 0))
		return;
	presto_write_locked(r, PRESTO_EV_OVERFLOW, 0, 0, 0, r->pending_lost,
			    "", 0, NULL, 0);
	r->pending_lost = 0;
}

static inline void presto_lose_locked(struct presto_reader *r)
{
	lockdep_assert_held(&r->lock);
	r->pending_lost++;
	r->lost_total++;
}

/* Queue an event or count it as lost.  Returns true if queued.  [lock] */
static bool presto_queue_locked(struct presto_reader *r, u8 type, u16 flags,
				u16 mode, u64 ino, const char *p1, u32 len1,
				const char *p2, u32 len2)
{
	u32 need = presto_rec_len(len1, len2) + presto_rec_len(0, 0);
	u32 avail = presto_free_locked(r);

	lockdep_assert_held(&r->lock);
	if (r->pending_lost)
		need += presto_rec_len(0, 0);
	if (avail < need) {
		presto_lose_locked(r);
		return false;
	}
	presto_flush_overflow_locked(r);
	presto_write_locked(r, type, flags, mode, ino, 0, p1, len1, p2, len2);
	return true;
}

/* ---- write table (open addressing, linear probing) ------------------ */

/*
 * A write through a shared mmap raises no MODIFY, so a close cannot rely on
 * having seen one.  Each regular file inside the volume that is open for
 * writing gets an entry when it is opened, holding a change stamp: its
 * ctime.  On the filesystems of presto_stamps_work every write path, mmap
 * included (page_mkwrite calls file_update_time), sets the ctime to the
 * current clock tick; elsewhere every write-close is reported.  A close reports the file when a MODIFY was seen or
 * the stamp moved since the entry was made.  A ctime already in the current
 * tick cannot show a later change in the same tick: such an entry is
 * "racy" and reports its close as UNVERIFIED, unless the file is empty.
 *
 * After a truncate, whose ctime is always in the current tick, the stamp is
 * the i_version where the filesystem keeps one (querying it makes the next
 * change increment it): exact, so the close that usually follows does not
 * report again.  Not at open: a queried i_version makes the next write
 * dirty the inode (a journal update on ext4) even within one tick.
 *
 * The entry stays until the last writer closes: the stamp moves when a
 * page is made writable, before the store lands, so re-taking it while a
 * writer may still store could hide that store.  Once no writer is left
 * every store is done, and the report the last close queues comes after
 * them.
 */
#define PRESTO_WF_WRITTEN	BIT(0)	/* a MODIFY was seen */
#define PRESTO_WF_RACY		BIT(1)	/* ctime stamp taken in its own tick */
#define PRESTO_WF_UNSURE	BIT(2)	/* a writer may predate the entry */
#define PRESTO_WF_IVERSION	BIT(3)	/* the stamp is an i_version */

/*
 * Entries and caches are keyed by the inode itself, not its number: inode
 * numbers repeat across btrfs subvolumes of one superblock.  A freed
 * inode's address may come back; see presto_open_write.
 */
static inline u64 presto_key(struct inode *inode)
{
	return (u64)(uintptr_t)inode;
}

static inline u32 presto_wtab_slot(u64 key)
{
	return hash_64(key, PRESTO_WTAB_BITS);
}

/* Returns the slot holding key, or the empty slot where it would go. */
static struct presto_wfile *presto_wtab_find(struct presto_reader *r, u64 key)
{
	u32 i = presto_wtab_slot(key);

	while (r->wtab[i].key && r->wtab[i].key != key)
		i = (i + 1) & (PRESTO_WTAB_SIZE - 1);
	return &r->wtab[i];
}

static inline s64 presto_ctime_ns(struct inode *inode)
{
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 6, 0)
	struct timespec64 ts = inode_get_ctime(inode);
#else
	struct timespec64 ts = inode->i_ctime;
#endif
	return timespec64_to_ns(&ts);
}

/*
 * The offset of the realtime clock from the monotonic one: it moves only
 * when the clock is set (or a leap second or a resume steps it).
 */
static inline s64 presto_clock_offset(void)
{
	return ktime_mono_to_real(0);
}

/*
 * Start @w afresh with @flags and a ctime stamp; racy if the clock has not
 * left the stamp's tick.
 */
static void presto_wfile_start(struct presto_wfile *w, struct inode *inode,
			       u32 flags)
{
	struct timespec64 now = current_time(inode);

	w->flags = flags;
	w->stamp = presto_ctime_ns(inode);
	w->clock = presto_clock_offset();
	if (w->stamp >= timespec64_to_ns(&now))
		w->flags |= PRESTO_WF_RACY;
}

/*
 * The stamp after a truncate: exact where the filesystem allows.  Not while
 * a shared writable mapping exists, as a store through it may still land.
 * The stamp is taken first (querying i_version makes the next change
 * increment it), then the mapping checked: a mapping made in between is
 * seen, or its first store moves the new stamp.
 */
static void presto_restamp(struct presto_wfile *w, struct inode *inode)
{
	struct presto_wfile fresh = { .key = w->key };

	if (IS_I_VERSION(inode)) {
		fresh.flags = PRESTO_WF_IVERSION;
		fresh.stamp = inode_query_iversion(inode);
	} else {
		presto_wfile_start(&fresh, inode, 0);
	}
	smp_mb();	/* the stamp before the mapping count */
	if (!mapping_writably_mapped(inode->i_mapping))
		*w = fresh;
}

enum presto_verdict { PRESTO_UNCHANGED, PRESTO_CHANGED, PRESTO_MAYBE };

/*
 * Filesystems whose shared mappings fault on the first store to a clean
 * page and update the times there (page_mkwrite), with ctime granularity
 * no coarser than the clock tick.  Elsewhere a store can leave the ctime
 * alone: tmpfs maps pages writable on a read fault, overlayfs moves the
 * real inode's times, FAT keeps ctime = mtime in 2 s steps, NFS and FUSE
 * may not keep times locally.  There every write-close is reported.
 */
static bool presto_stamps_work(struct inode *inode)
{
	switch (inode->i_sb->s_magic) {
	case EXT4_SUPER_MAGIC:		/* also ext2, ext3 */
	case XFS_SUPER_MAGIC:
	case BTRFS_SUPER_MAGIC:
	case RAMFS_MAGIC:
		return true;
	default:
		return false;
	}
}

/* Did the file change since its entry was made?  [lock] */
static enum presto_verdict presto_wfile_changed(struct presto_wfile *w,
						struct inode *inode)
{
	if (w->flags & PRESTO_WF_WRITTEN)
		return PRESTO_CHANGED;
	if ((w->flags & PRESTO_WF_UNSURE) || !presto_stamps_work(inode))
		return PRESTO_MAYBE;
	if (w->flags & PRESTO_WF_IVERSION)
		return inode_peek_iversion(inode) != w->stamp ?
		       PRESTO_CHANGED : PRESTO_UNCHANGED;
	if (presto_ctime_ns(inode) != (s64)w->stamp)
		return PRESTO_CHANGED;
	/* A clock set back may give a later store the very same ctime. */
	if (presto_clock_offset() != w->clock)
		return PRESTO_MAYBE;
	/*
	 * A racy stamp cannot see a store through a mapping made in its tick.
	 * An empty file holds no such store: a mapping cannot reach past the
	 * end, and every size change reports by itself (MODIFY, truncate).
	 */
	if ((w->flags & PRESTO_WF_RACY) && i_size_read(inode) > 0)
		return PRESTO_MAYBE;
	return PRESTO_UNCHANGED;
}

/* Add an entry for @inode at @w (an empty slot); NULL if full.  [lock] */
static struct presto_wfile *presto_wtab_add(struct presto_reader *r,
					    struct presto_wfile *w,
					    struct inode *inode, u32 flags)
{
	lockdep_assert_held(&r->lock);
	if (r->wtab_used >= PRESTO_WTAB_LIMIT)
		return NULL;	/* too many open for writing: closes report */
	w->key = presto_key(inode);
	presto_wfile_start(w, inode, flags);
	r->wtab_used++;
	return w;
}

/* Remove the entry at @w.  [lock] */
static void presto_wtab_del(struct presto_reader *r, struct presto_wfile *w)
{
	u32 mask = PRESTO_WTAB_SIZE - 1;
	u32 i = w - r->wtab, j, k;

	lockdep_assert_held(&r->lock);
	w->key = 0;
	r->wtab_used--;
	/* Backward-shift the entries of the probe run that follows. */
	for (j = (i + 1) & mask; r->wtab[j].key; j = (j + 1) & mask) {
		k = presto_wtab_slot(r->wtab[j].key);
		if (i <= j ? (i < k && k <= j) : (i < k || k <= j))
			continue;
		r->wtab[i] = r->wtab[j];
		r->wtab[j].key = 0;
		i = j;
	}
}

/* ---- names ----------------------------------------------------------- */

static inline bool presto_is_private_name(const unsigned char *name, u32 len)
{
	return len == sizeof(PRESTO_PRIVATE_DIR) - 1 &&
	       !memcmp(name, PRESTO_PRIVATE_DIR, len);
}

/*
 * Locate @d (plus an optional last component @leaf) relative to @root.
 * With @buf, the relative path is built at the end of buf[0, PRESTO_SCRATCH
 * / 2) and returned through @out/@outlen (no leading '/', not terminated).
 * Returns an enum presto_where, -ENAMETOOLONG, or -ESTALE for a dentry not
 * connected to the filesystem's root.
 *
 * Walks d_parent under RCU and a rename_lock read section (retrying, then
 * locking, like d_path).  Names are read as prepend_name() reads them,
 * without d_lock: a rename racing with the walk may give a torn name, and
 * then the sequence check sends the walk round again.
 */
static int presto_locate(struct dentry *start, const struct qstr *leaf,
			 struct dentry *root, char *buf,
			 const char **out, u32 *outlen)
{
	const u32 buflen = PRESTO_SCRATCH / 2;
	char *end = buf ? buf + buflen : NULL;
	struct dentry *d;
	int seq = 0;
	int where;
	char *p;

	if (leaf && start == root &&
	    presto_is_private_name(leaf->name, leaf->len))
		return PRESTO_PRIVATE;
	if (leaf && buf && leaf->len + 1 > buflen)
		return -ENAMETOOLONG;

restart:
	p = end;
	where = PRESTO_INSIDE;
	if (leaf && buf) {
		p -= leaf->len;
		memcpy(p, leaf->name, leaf->len);
		*--p = '/';
	}

	rcu_read_lock();
	read_seqbegin_or_lock(&rename_lock, &seq);
	d = start;
	while (d != root) {
		struct dentry *parent = READ_ONCE(d->d_parent);
		/* Pairs with the release in __d_move's name update. */
		const unsigned char *name = smp_load_acquire(&d->d_name.name);
		u32 len = READ_ONCE(d->d_name.len);

		if (d == parent) {
			/*
			 * The filesystem's root lies above the volume; any
			 * other top is a dentry cut from its parents (one
			 * open_by_handle_at made): where it lies is unknown.
			 */
			where = d == d->d_sb->s_root ? PRESTO_OUTSIDE : -ESTALE;
			break;
		}
		if (parent == root && presto_is_private_name(name, len))
			where = PRESTO_PRIVATE;
		if (buf && where == PRESTO_INSIDE) {
			if (p - buf < (long)len + 1) {
				where = -ENAMETOOLONG;
				break;
			}
			p -= len;
			memcpy(p, name, len);
			*--p = '/';
		}
		d = parent;
	}
	rcu_read_unlock();
	if (need_seqretry(&rename_lock, seq)) {
		seq = 1;	/* second pass takes rename_lock */
		goto restart;
	}
	done_seqretry(&rename_lock, seq);

	if (buf && where == PRESTO_INSIDE) {
		if (p < end)
			p++;	/* drop the leading '/' */
		*out = p;
		*outlen = end - p;
	}
	return where;
}

/* ---- fsnotify handler ------------------------------------------------ */

static void presto_wake(struct presto_reader *r)
{
	if (wq_has_sleeper(&r->wq))
		wake_up_interruptible(&r->wq);
}

static inline u16 presto_mode(struct inode *inode)
{
	return inode ? (u16)inode->i_mode : 0;
}

/*
 * Queue an event about one object; paths come from presto_locate().
 * Returns true if the reader should be woken.  [lock]
 */
static bool presto_event_locked(struct presto_reader *r, u8 type, u16 flags,
				struct inode *inode, struct dentry *d,
				const struct qstr *leaf)
{
	const char *path;
	u32 len;
	int where = PRESTO_OUTSIDE;

	lockdep_assert_held(&r->lock);
	if (r->armed)
		where = presto_locate(d, leaf, r->root.dentry, r->scratch,
				      &path, &len);
	if (where == PRESTO_INSIDE) {
		if (presto_queue_locked(r, type, flags, presto_mode(inode),
					inode ? inode->i_ino : 0, path, len,
					NULL, 0) &&
		    type == PRESTO_EV_CREATE)
			r->in_key = presto_key(inode);
	} else if (where < 0) {
		presto_lose_locked(r);
	}
	return where == PRESTO_INSIDE || where < 0;
}

/*
 * Any change of the namespace may move an inode into or out of the volume,
 * or free an inode whose address comes back: forget the caches of
 * presto_wtab_get and presto_modify.  [lock]
 */
static inline void presto_forget_locked(struct presto_reader *r)
{
	r->skip_key = 0;
	r->in_key = 0;
}

/* Every event queued through here but SETATTR changes the namespace. */
static void presto_event_one(struct presto_reader *r, u8 type, u16 flags,
			     struct inode *inode, struct dentry *d,
			     const struct qstr *leaf)
{
	bool wake;

	spin_lock(&r->lock);
	if (type != PRESTO_EV_SETATTR)
		presto_forget_locked(r);
	wake = presto_event_locked(r, type, flags, inode, d, leaf);
	spin_unlock(&r->lock);
	if (wake)
		presto_wake(r);
}

/*
 * The write-table entry of @inode, made with @flags if it has none and @d
 * lies inside the volume; with @restart an existing entry starts afresh
 * too.  NULL if outside (*@outside set), if where @d lies is unknown, or
 * if the table is full.  [lock]
 */
static struct presto_wfile *presto_wtab_get(struct presto_reader *r,
					    struct inode *inode,
					    struct dentry *d, u32 flags,
					    bool restart, bool *outside)
{
	struct presto_wfile *w;
	int where;

	lockdep_assert_held(&r->lock);
	*outside = false;
	if (!r->armed)
		return NULL;
	w = presto_wtab_find(r, presto_key(inode));
	if (w->key) {
		if (restart)
			presto_wfile_start(w, inode, flags);
		return w;
	}
	/* Its creation was just queued (open with O_CREAT): inside. */
	if (presto_key(inode) != r->in_key) {
		where = presto_locate(d, NULL, r->root.dentry, NULL, NULL, NULL);
		if (where != PRESTO_INSIDE) {
			/* Unknown: its close is located again, and lost. */
			*outside = where >= 0;
			return NULL;
		}
	}
	return presto_wtab_add(r, w, inode, flags);
}

/* A regular file was opened for writing (the opener counts as a writer). */
static void presto_open_write(struct presto_reader *r, struct inode *inode,
			      struct dentry *d)
{
	bool alone, outside;

	spin_lock(&r->lock);
	/*
	 * Read under the lock, so that no other opener's entry can come and
	 * go between this count and the restart below.
	 * Other writers and no entry yet: they opened before the reader armed.
	 * No other writer: an entry left over (two last writers that closed
	 * at once each saw the other; a freed inode's address reused) starts
	 * afresh, as nothing can store any more through what it was made for.
	 */
	alone = atomic_read(&inode->i_writecount) == 1;
	presto_wtab_get(r, inode, d, alone ? 0 : PRESTO_WF_UNSURE, alone,
			&outside);
	spin_unlock(&r->lock);
}

/* A regular file was written through an open file. */
static void presto_modify(struct presto_reader *r, struct inode *inode,
			  struct dentry *d)
{
	struct presto_wfile *w;
	bool outside;

	spin_lock(&r->lock);
	if (presto_key(inode) == r->skip_key)
		goto out;	/* fast path: known to be outside */
	/* Made here, the entry's writer opened the file before arming. */
	w = presto_wtab_get(r, inode, d, PRESTO_WF_UNSURE, false, &outside);
	if (w)
		w->flags |= PRESTO_WF_WRITTEN;
	/* A file with another name may be written through one inside too. */
	else if (outside && inode->i_nlink == 1)
		r->skip_key = presto_key(inode);
out:
	spin_unlock(&r->lock);
}

/* A file opened for writing was closed (its last reference dropped). */
static void presto_close_write(struct presto_reader *r, struct inode *inode,
			       struct dentry *d)
{
	struct presto_wfile *w = NULL;
	struct dentry *alias = NULL;
	enum presto_verdict v;
	u16 flags = PRESTO_F_UNVERIFIED;
	bool report = true, wake = false;

	/*
	 * The name it was opened by is gone but the file has others (a hard
	 * link, an O_TMPFILE given a name): report it by one of those.
	 */
	if (d_unlinked(d) && inode->i_nlink)
		alias = d_find_alias(inode);
	spin_lock(&r->lock);
	if (r->armed && !(r->arm_flags & PRESTO_ARM_ALL_CLOSE_WRITE))
		w = presto_wtab_find(r, presto_key(inode));
	if (!r->armed) {
		report = false;
	} else if (w && w->key) {
		v = presto_wfile_changed(w, inode);
		report = v != PRESTO_UNCHANGED;
		if (v == PRESTO_CHANGED)
			flags = 0;
		/* This writer still counts: fput drops it later. */
		if (atomic_read(&inode->i_writecount) <= 1)
			presto_wtab_del(r, w);
	}
	/*
	 * Otherwise (every close reported; opened before arming; a full
	 * table) report it if it lies inside.  A file with no name left is
	 * not reported; one whose other names cannot be found is lost.
	 */
	if (report && (alias || !d_unlinked(d)))
		wake = presto_event_locked(r, PRESTO_EV_CLOSE_WRITE, flags,
					   inode, alias ? alias : d, NULL);
	else if (report && inode->i_nlink) {
		presto_lose_locked(r);
		wake = true;
	}
	spin_unlock(&r->lock);
	dput(alias);
	if (wake)
		presto_wake(r);
}

/*
 * A size (or mtime) change made without a write through an open file:
 * truncate by path, ftruncate, an O_TRUNC open.  No write-close may follow,
 * so it is reported at once.  The file's write-table entry then starts
 * afresh, in the same lock section, unless a store through a shared
 * mapping may still land (writes through a descriptor raise MODIFY after
 * they land, so they are seen either way).
 */
static void presto_resized(struct presto_reader *r, struct inode *inode,
			   struct dentry *d)
{
	struct presto_wfile *w;
	bool wake;

	spin_lock(&r->lock);
	wake = presto_event_locked(r, PRESTO_EV_CLOSE_WRITE, 0, inode, d, NULL);
	if (wake && r->armed && S_ISREG(inode->i_mode)) {
		w = presto_wtab_find(r, presto_key(inode));
		if (w->key)
			presto_restamp(w, inode);
	}
	spin_unlock(&r->lock);
	if (wake)
		presto_wake(r);
}

static void presto_rename(struct presto_reader *r, struct dentry *moved,
			  struct inode *old_dir, const struct qstr *old_name)
{
	struct inode *inode = d_inode(moved);
	/*
	 * Within one directory (the usual rename) the old parent is the moved
	 * dentry's parent, pinned by it and by the renamer's directory locks.
	 */
	struct dentry *parent = moved->d_parent;
	struct dentry *found = d_inode(parent) == old_dir ? NULL :
			       d_find_alias(old_dir);
	struct dentry *old_parent = found ? found : parent;
	const char *p1 = NULL, *p2 = NULL;
	u32 l1 = 0, l2 = 0;
	int w1, w2;
	u16 flags = d_is_dir(moved) ? PRESTO_F_ISDIR : 0;
	bool wake = true;

	spin_lock(&r->lock);
	presto_forget_locked(r);
	if (!r->armed || moved == r->root.dentry) {
		wake = false;	/* the volume itself moved: nothing changed in it */
		goto out;
	}
	if (d_inode(old_parent) != old_dir) {
		presto_lose_locked(r);	/* no dentry for the old directory */
		goto out;
	}
	w1 = presto_locate(old_parent, old_name, r->root.dentry, r->scratch,
			   &p1, &l1);
	w2 = presto_locate(moved, NULL, r->root.dentry,
			   r->scratch + PRESTO_SCRATCH / 2, &p2, &l2);
	if (w1 < 0 || w2 < 0)
		presto_lose_locked(r);
	else if (w1 == PRESTO_INSIDE && w2 == PRESTO_INSIDE)
		presto_queue_locked(r, PRESTO_EV_RENAME, flags,
				    presto_mode(inode), inode->i_ino,
				    p1, l1, p2, l2);
	else if (w1 == PRESTO_INSIDE)
		presto_queue_locked(r, PRESTO_EV_MOVED_OUT, flags,
				    presto_mode(inode), inode->i_ino,
				    p1, l1, NULL, 0);
	else if (w2 == PRESTO_INSIDE)
		presto_queue_locked(r, PRESTO_EV_MOVED_IN, flags,
				    presto_mode(inode), inode->i_ino,
				    p2, l2, NULL, 0);
	else
		wake = false;
out:
	spin_unlock(&r->lock);
	dput(found);		/* not the last reference: the caller pins it */
	if (wake)
		presto_wake(r);
}

/* Directory entry event reported as (dir inode, name, object inode). */
static void presto_dirent(struct presto_reader *r, u8 type, u16 flags,
			  struct inode *inode, struct inode *dir,
			  const struct qstr *name)
{
	struct dentry *parent = d_find_alias(dir);

	if (!parent) {
		spin_lock(&r->lock);
		presto_forget_locked(r);
		presto_lose_locked(r);
		spin_unlock(&r->lock);
		presto_wake(r);
		return;
	}
	presto_event_one(r, type, flags, inode, parent, name);
	dput(parent);		/* not the last reference: the caller pins it */
}

static int presto_handle_event(struct fsnotify_group *group, u32 mask,
			       const void *data, int data_type,
			       struct inode *dir, const struct qstr *name,
			       u32 cookie, struct fsnotify_iter_info *iter_info)
{
	struct presto_reader *r = group->private;
	struct inode *inode = fsnotify_data_inode(data, data_type);
	struct dentry *d = fsnotify_data_dentry(data, data_type);
	u16 isdir = (mask & FS_ISDIR) ? PRESTO_F_ISDIR : 0;

	if (mask & FS_RENAME) {
		if (d && dir && name)
			presto_rename(r, d, dir, name);
		return 0;
	}
	if (mask & FS_CREATE) {
		if (d && d_inode(d)) {
			/* create, mkdir, mknod, symlink: data is the dentry */
			inode = d_inode(d);
			if (S_ISDIR(inode->i_mode))
				presto_event_one(r, PRESTO_EV_MKDIR,
						 PRESTO_F_ISDIR, inode, d, NULL);
			else if (S_ISLNK(inode->i_mode))
				presto_event_one(r, PRESTO_EV_SYMLINK, 0,
						 inode, d, NULL);
			else
				presto_event_one(r, PRESTO_EV_CREATE, 0,
						 inode, d, NULL);
		} else if (inode && dir && name) {
			/* link: data is the inode, plus dir and new name */
			presto_dirent(r, PRESTO_EV_LINK, 0, inode, dir, name);
		}
		return 0;
	}
	if (mask & FS_DELETE) {
		if (inode && dir && name) {
			if (S_ISDIR(inode->i_mode))
				isdir = PRESTO_F_ISDIR;
			presto_dirent(r, isdir ? PRESTO_EV_RMDIR :
				      PRESTO_EV_UNLINK, isdir, inode, dir,
				      name);
		}
		return 0;
	}
	/* Events on an object: only those that name it by dentry. */
	if (!d || !inode)
		return 0;
	if (mask & FS_MODIFY) {
		/*
		 * A size change not made through an open file's write (truncate
		 * by path, ftruncate, an O_TRUNC open, an mtime-only utime) comes
		 * from notify_change with the dentry: no write-close may follow,
		 * so it is reported at once.
		 */
		if (data_type == FSNOTIFY_EVENT_DENTRY)
			presto_resized(r, inode, d);
		else if (S_ISREG(inode->i_mode) &&
			 !(r->arm_flags & PRESTO_ARM_ALL_CLOSE_WRITE))
			presto_modify(r, inode, d);
	}
	if (mask & FS_ATTRIB)
		presto_event_one(r, PRESTO_EV_SETATTR, isdir, inode, d, NULL);
	if (!S_ISREG(inode->i_mode))
		return 0;	/* a fifo's or a device's data is not replicated */
	/* Open and close events carry &file->f_path (fsnotify_file()). */
	if ((mask & FS_OPEN) && data_type == FSNOTIFY_EVENT_PATH &&
	    (container_of(data, struct file, f_path)->f_mode & FMODE_WRITE))
		presto_open_write(r, inode, d);
	if (mask & FS_CLOSE_WRITE)
		presto_close_write(r, inode, d);
	return 0;
}

static void presto_free_mark(struct fsnotify_mark *fsn)
{
	kfree(container_of(fsn, struct presto_mark, fsn));
	atomic_dec(&presto_live_marks);
}

static const struct fsnotify_ops presto_fsnotify_ops = {
	.handle_event	= presto_handle_event,
	.free_mark	= presto_free_mark,
};

/* ---- arm / disarm ---------------------------------------------------- */

/* Back to unarmed: the ring and tables go.  No mark is attached.  [arm_mutex] */
static void presto_teardown_locked(struct presto_reader *r)
{
	u8 *ring;
	struct presto_wfile *wtab;
	char *scratch;

	lockdep_assert_held(&r->arm_mutex);
	mutex_lock(&r->read_mutex);
	spin_lock(&r->lock);
	r->armed = false;
	ring = r->ring;
	wtab = r->wtab;
	scratch = r->scratch;
	r->ring = NULL;
	r->wtab = NULL;
	r->scratch = NULL;
	r->size = 0;
	r->head = 0;
	r->tail = 0;
	r->pending_lost = 0;
	spin_unlock(&r->lock);
	mutex_unlock(&r->read_mutex);

	wake_up_interruptible(&r->wq);
	vfree(ring);
	kfree(wtab);
	kfree(scratch);
	path_put(&r->root);
	r->root.mnt = NULL;
	r->root.dentry = NULL;
}

/* [arm_mutex] */
static void presto_disarm_locked(struct presto_reader *r)
{
	struct presto_mark *m = r->mark;

	lockdep_assert_held(&r->arm_mutex);
	if (!m)
		return;
	fsnotify_destroy_mark(&m->fsn, r->group);
	fsnotify_put_mark(&m->fsn);
	/* After this no handler runs for the mark and free_mark has run. */
	fsnotify_wait_marks_destroyed();
	r->mark = NULL;
	presto_teardown_locked(r);
}

static long presto_arm(struct presto_reader *r, void __user *uarg)
{
	struct presto_arm arg;
	struct presto_mark *m = NULL;
	struct path root;
	u8 *ring = NULL;
	struct presto_wfile *wtab = NULL;
	char *scratch = NULL, *name;
	u32 mask;
	int err;

	if (!capable(CAP_SYS_ADMIN))
		return -EPERM;
	if (copy_from_user(&arg, uarg, sizeof(arg)))
		return -EFAULT;
	if (arg.size != sizeof(arg) || arg.reserved ||
	    (arg.flags & ~PRESTO_ARM_FLAGS))
		return -EINVAL;
	if (!arg.ring_bytes)
		arg.ring_bytes = PRESTO_RING_DEFAULT;
	if (!is_power_of_2(arg.ring_bytes) ||
	    arg.ring_bytes < PRESTO_RING_MIN || arg.ring_bytes > PRESTO_RING_MAX)
		return -EINVAL;

	name = strndup_user(u64_to_user_ptr(arg.path), PATH_MAX);
	if (IS_ERR(name))
		return PTR_ERR(name);
	err = kern_path(name, LOOKUP_FOLLOW | LOOKUP_DIRECTORY, &root);
	kfree(name);
	if (err)
		return err;

	err = -ENOMEM;
	ring = vzalloc(arg.ring_bytes);
	wtab = kcalloc(PRESTO_WTAB_SIZE, sizeof(*wtab), GFP_KERNEL);
	scratch = kmalloc(PRESTO_SCRATCH, GFP_KERNEL);
	m = kzalloc(sizeof(*m), GFP_KERNEL);
	if (!ring || !wtab || !scratch || !m)
		goto out_free;

	mutex_lock(&r->arm_mutex);
	err = -EBUSY;
	if (r->mark)
		goto out_unlock;

	r->root = root;
	r->arm_flags = arg.flags;
	spin_lock(&r->lock);
	r->ring = ring;
	r->size = arg.ring_bytes;
	r->head = 0;
	r->tail = 0;
	r->seq = 0;
	r->queued = 0;
	r->lost_total = 0;
	r->pending_lost = 0;
	r->wtab = wtab;
	r->wtab_used = 0;
	r->scratch = scratch;
	r->armed = true;
	spin_unlock(&r->lock);

	mask = FS_CREATE | FS_DELETE | FS_RENAME | FS_ATTRIB | FS_MODIFY |
	       FS_CLOSE_WRITE | FS_ISDIR;
	if (!(arg.flags & PRESTO_ARM_ALL_CLOSE_WRITE))
		mask |= FS_OPEN;	/* write table entries */
	fsnotify_init_mark(&m->fsn, r->group);
	m->fsn.mask = mask;
	m->reader = r;
	atomic_inc(&presto_live_marks);
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 9, 0)
	/* 6.9 takes the object itself and keeps sb marks in s_fsnotify_info. */
	err = fsnotify_add_mark(&m->fsn, root.dentry->d_sb, FSNOTIFY_OBJ_TYPE_SB, 0);
#else
	err = fsnotify_add_mark(&m->fsn, &root.dentry->d_sb->s_fsnotify_marks,
				FSNOTIFY_OBJ_TYPE_SB, 0, NULL);
#endif
	if (err) {
		/* Never attached: the put frees it through free_mark. */
		fsnotify_put_mark(&m->fsn);
		fsnotify_wait_marks_destroyed();
		presto_teardown_locked(r);	/* frees ring, tables, root */
		mutex_unlock(&r->arm_mutex);
		return err;
	}
	r->mark = m;
	mutex_unlock(&r->arm_mutex);
	return 0;

out_unlock:
	mutex_unlock(&r->arm_mutex);
out_free:
	kfree(m);
	kfree(scratch);
	kfree(wtab);
	vfree(ring);
	path_put(&root);
	return err;
}

/* ---- file operations ------------------------------------------------- */

static int presto_open(struct inode *inode, struct file *file)
{
	struct presto_reader *r;
	struct fsnotify_group *group;

	r = kzalloc(sizeof(*r), GFP_KERNEL);
	if (!r)
		return -ENOMEM;
	group = fsnotify_alloc_group(&presto_fsnotify_ops, 0);
	if (IS_ERR(group)) {
		kfree(r);
		return PTR_ERR(group);
	}
	group->private = r;
	r->group = group;
	mutex_init(&r->arm_mutex);
	mutex_init(&r->read_mutex);
	init_waitqueue_head(&r->wq);
	spin_lock_init(&r->lock);
	file->private_data = r;
	return stream_open(inode, file);
}

static int presto_release(struct inode *inode, struct file *file)
{
	struct presto_reader *r = file->private_data;

	mutex_lock(&r->arm_mutex);
	presto_disarm_locked(r);
	mutex_unlock(&r->arm_mutex);
	/* No marks are left, so this is the last reference. */
	fsnotify_put_group(r->group);
	kfree(r);
	return 0;
}

static bool presto_readable(struct presto_reader *r)
{
	bool ret;

	spin_lock(&r->lock);
	ret = !r->armed || r->head != r->tail || r->pending_lost;
	spin_unlock(&r->lock);
	return ret;
}

static ssize_t presto_read(struct file *file, char __user *buf, size_t count,
			   loff_t *ppos)
{
	struct presto_reader *r = file->private_data;
	u64 start, pos;
	u32 n, off, first;
	int err;

	if (count < PRESTO_EVENT_HDR_LEN)
		return -EINVAL;
	count = min_t(size_t, count, PRESTO_RING_MAX);

	for (;;) {
		err = mutex_lock_interruptible(&r->read_mutex);
		if (err)
			return err;
		spin_lock(&r->lock);
		presto_flush_overflow_locked(r);
		if (r->head != r->tail)
			break;	/* with read_mutex and lock held */
		spin_unlock(&r->lock);
		mutex_unlock(&r->read_mutex);
		if (!READ_ONCE(r->armed))
			return 0;
		if (file->f_flags & O_NONBLOCK)
			return -EAGAIN;
		err = wait_event_interruptible(r->wq, presto_readable(r));
		if (err)
			return err;
	}

	/* Take as many whole records as fit in the buffer. */
	start = r->tail;
	for (pos = start; pos != r->head; ) {
		u32 len = *(u32 *)(r->ring + (pos & (r->size - 1)));

		if (WARN_ON_ONCE(len < PRESTO_EVENT_HDR_LEN))
			break;
		if (pos + len - start > count)
			break;
		pos += len;
	}
	spin_unlock(&r->lock);
	n = pos - start;
	if (!n) {
		mutex_unlock(&r->read_mutex);
		return -EINVAL;		/* buffer smaller than the next record */
	}

	/* [start, pos) is ours: writers only fill [head, tail + size). */
	off = start & (r->size - 1);
	first = min(n, r->size - off);
	err = 0;
	if (copy_to_user(buf, r->ring + off, first) ||
	    (n > first && copy_to_user(buf + first, r->ring, n - first)))
		err = -EFAULT;
	if (!err) {
		spin_lock(&r->lock);
		r->tail = pos;
		spin_unlock(&r->lock);
	}
	mutex_unlock(&r->read_mutex);
	/* Not "err ? err : n": with n a u32 that would be -EFAULT as a huge count. */
	if (err)
		return err;
	return n;
}

static __poll_t presto_poll(struct file *file, poll_table *wait)
{
	struct presto_reader *r = file->private_data;
	__poll_t mask = 0;

	poll_wait(file, &r->wq, wait);
	spin_lock(&r->lock);
	if (r->head != r->tail || r->pending_lost)
		mask |= EPOLLIN | EPOLLRDNORM;
	else if (!r->armed)
		mask |= EPOLLHUP;
	spin_unlock(&r->lock);
	return mask;
}

static long presto_ioctl(struct file *file, unsigned int cmd,
			 unsigned long arg)
{
	struct presto_reader *r = file->private_data;
	struct presto_stats st = {};

	switch (cmd) {
	case PRESTO_IOC_ARM:
		return presto_arm(r, (void __user *)arg);
	case PRESTO_IOC_DISARM:
		mutex_lock(&r->arm_mutex);
		presto_disarm_locked(r);
		mutex_unlock(&r->arm_mutex);
		return 0;
	case PRESTO_IOC_STATS:
		st.abi_version = PRESTO_ABI_VERSION;
		spin_lock(&r->lock);
		st.armed = r->armed;
		st.ring_bytes = r->size;
		st.ring_used = r->head - r->tail;
		st.queued = r->queued;
		st.lost = r->lost_total;
		st.pending_lost = r->pending_lost;
		spin_unlock(&r->lock);
		if (copy_to_user((void __user *)arg, &st, sizeof(st)))
			return -EFAULT;
		return 0;
	default:
		return -ENOTTY;
	}
}

static const struct file_operations presto_fops = {
	.owner		= THIS_MODULE,
	.open		= presto_open,
	.release	= presto_release,
	.read		= presto_read,
	.poll		= presto_poll,
	.unlocked_ioctl	= presto_ioctl,
	.compat_ioctl	= compat_ptr_ioctl,
#if LINUX_VERSION_CODE < KERNEL_VERSION(6, 12, 0)
	.llseek		= no_llseek,	/* 6.12: no .llseek already means -ESPIPE */
#endif
};

static struct miscdevice presto_misc = {
	.minor	= MISC_DYNAMIC_MINOR,
	.name	= "presto",
	.fops	= &presto_fops,
	.mode	= 0600,
};

static int __init presto_init(void)
{
	BUILD_BUG_ON(sizeof(struct presto_event) != PRESTO_EVENT_HDR_LEN);
	BUILD_BUG_ON(sizeof(struct presto_arm) != 24);
	BUILD_BUG_ON(sizeof(struct presto_stats) != 40);
	return misc_register(&presto_misc);
}

static void __exit presto_exit(void)
{
	misc_deregister(&presto_misc);
	WARN_ON(atomic_read(&presto_live_marks));
}

module_init(presto_init);
module_exit(presto_exit);

MODULE_LICENSE("GPL");
MODULE_AUTHOR("replicator project");
MODULE_DESCRIPTION("Presto: forward VFS events of a volume via /dev/presto");
MODULE_VERSION("1.0");
