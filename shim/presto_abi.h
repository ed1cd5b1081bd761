/* SPDX-License-Identifier: (GPL-2.0 WITH Linux-syscall-note) OR MIT */
/*
 * presto_abi.h - the /dev/presto user/kernel ABI, version 1.
 *
 * This header is the single source of truth for the ABI; it is included by
 * the kernel module (shim/presto.c), by the QEMU test program and mirrors
 * docs/presto-abi.md.  It depends only on <linux/types.h> and
 * <linux/ioctl.h> so that it builds in the kernel and in userspace.
 *
 * Byte order: every multi-byte field is little-endian (the module is only
 * built for little-endian machines; see the BUILD_BUG_ON in presto.c).
 */
#ifndef _UAPI_PRESTO_ABI_H
#define _UAPI_PRESTO_ABI_H

#include <linux/types.h>
#include <linux/ioctl.h>

#define PRESTO_DEVICE		"/dev/presto"
#define PRESTO_ABI_VERSION	1
#define PRESTO_MAGIC		0x5250	/* bytes 0x50 0x52: "PR" */

/*
 * Event record, as returned by read(2).  A read returns one or more whole
 * records back to back; each record starts on an 8-byte boundary of the
 * buffer and rec_len (a multiple of 8) gives the offset of the next one.
 *
 *   header (48 bytes, this struct)
 *   path   (path_len bytes, then one NUL)
 *   path2  (path2_len bytes, then one NUL)   - only when path2_len > 0
 *   zero padding up to rec_len
 *
 * Paths are relative to the armed volume root, without a leading '/', in
 * the bytes the filesystem stores (no encoding is applied).  The volume
 * root itself has the empty path.
 */
struct presto_event {
	__u32 rec_len;		/* total length of this record, multiple of 8 */
	__u16 magic;		/* PRESTO_MAGIC */
	__u8  version;		/* PRESTO_ABI_VERSION */
	__u8  type;		/* enum presto_event_type */
	__u64 seq;		/* per-reader sequence number, 1, 2, 3, ... */
	__u64 ino;		/* inode number of the object (0 for OVERFLOW) */
	__u64 time_ns;		/* CLOCK_REALTIME in ns when the event was queued */
	__u16 flags;		/* PRESTO_F_* */
	__u16 mode;		/* S_IFMT and permission bits of the object, 0 if unknown */
	__u16 path_len;		/* bytes of path, without the NUL */
	__u16 path2_len;	/* bytes of path2, without the NUL (RENAME only) */
	__u64 aux;		/* OVERFLOW: events lost; otherwise 0 */
};

#define PRESTO_EVENT_HDR_LEN	48
#define PRESTO_REC_ALIGN	8

enum presto_event_type {
	PRESTO_EV_CLOSE_WRITE	= 1,	/* file closed after it was written/truncated */
	PRESTO_EV_CREATE	= 2,	/* regular file (or fifo/socket/device) created */
	PRESTO_EV_MKDIR		= 3,	/* directory created */
	PRESTO_EV_RMDIR		= 4,	/* directory removed */
	PRESTO_EV_UNLINK	= 5,	/* non-directory name removed */
	PRESTO_EV_RENAME	= 6,	/* path (old) renamed to path2 (new) */
	PRESTO_EV_LINK		= 7,	/* hard link path created to inode ino */
	PRESTO_EV_SYMLINK	= 8,	/* symlink created (read the target yourself) */
	PRESTO_EV_SETATTR	= 9,	/* mode/owner/times/xattr changed (ATTRIB) */
	PRESTO_EV_MOVED_IN	= 10,	/* path renamed into the volume from outside */
	PRESTO_EV_MOVED_OUT	= 11,	/* path renamed out of the volume */
	PRESTO_EV_OVERFLOW	= 12,	/* aux events were lost: rescan the volume */
	PRESTO_EV_MAX		= 12,
};

/* presto_event.flags */
#define PRESTO_F_ISDIR		0x0001	/* the object is a directory */
#define PRESTO_F_UNVERIFIED	0x0002	/* CLOSE_WRITE without a seen modification */

/* ioctl interface */
#define PRESTO_IOC_MAGIC	0xB7

/*
 * PRESTO_IOC_ARM: start forwarding the events of one volume to this open
 * file.  size must be sizeof(struct presto_arm) (lets the struct grow).
 * path is a user pointer to a NUL-terminated path of a directory.
 * ring_bytes is the ring size: 0 means the default (256 KiB); otherwise a
 * power of two between 4 KiB and 16 MiB.
 * Errors: EBUSY (already armed), EINVAL, ENOTDIR, ENOENT, ENOMEM, EFAULT.
 */
struct presto_arm {
	__u32 size;		/* sizeof(struct presto_arm) */
	__u32 flags;		/* PRESTO_ARM_* */
	__u32 ring_bytes;	/* 0 = default */
	__u32 reserved;		/* must be 0 */
	__u64 path;		/* user pointer to the volume root path */
};

/* Report every close of a file opened for writing, written or not. */
#define PRESTO_ARM_ALL_CLOSE_WRITE	0x0001
#define PRESTO_ARM_FLAGS		0x0001

#define PRESTO_RING_DEFAULT	(256u << 10)
#define PRESTO_RING_MIN		(4u << 10)
#define PRESTO_RING_MAX		(16u << 20)

/* PRESTO_IOC_STATS: counters of this open file (armed or not). */
struct presto_stats {
	__u32 abi_version;	/* PRESTO_ABI_VERSION */
	__u32 armed;		/* 1 while armed */
	__u32 ring_bytes;	/* ring size, 0 when not armed */
	__u32 ring_used;	/* bytes waiting to be read */
	__u64 queued;		/* records queued since arm (incl. OVERFLOW) */
	__u64 lost;		/* events lost since arm */
	__u64 pending_lost;	/* lost events not yet reported by an OVERFLOW */
};

#define PRESTO_IOC_ARM		_IOW(PRESTO_IOC_MAGIC, 1, struct presto_arm)
#define PRESTO_IOC_DISARM	_IO(PRESTO_IOC_MAGIC, 2)
#define PRESTO_IOC_STATS	_IOR(PRESTO_IOC_MAGIC, 3, struct presto_stats)

#endif /* _UAPI_PRESTO_ABI_H */
