//! Batched map operations: BPF_MAP_LOOKUP_BATCH, BPF_MAP_UPDATE_BATCH and BPF_MAP_DELETE_BATCH (Linux
//! 5.6), and BPF_MAP_LOOKUP_AND_DELETE_ELEM on hash maps (5.14).
//!
//! Hand-written because aya 0.14 has none of them: its maps are read with BPF_MAP_GET_NEXT_KEY plus one
//! BPF_MAP_LOOKUP_ELEM per entry, two syscalls per connection, and a walk that restarts from the first
//! bucket whenever its cursor key is evicted. The connection table holds up to millions of entries and
//! the daemon reads it every sweep: one syscall per [`CHUNK`] entries instead. A hash map's batch walk
//! goes bucket by bucket with the bucket index as its cursor, so it never restarts and never returns a
//! key twice (a key always hashes to the same bucket); entries added or removed during the walk may or
//! may not be seen, as with any walk of a live table.
//!
//! The functions are safe: every pointer handed to the kernel is a live buffer of the size the command
//! reads or writes for that many elements. The caller only vouches that `K` and `V` are the map's key
//! and value types, which the typed aya handle the fd is taken from has already checked (key and value
//! sizes), and that the map is not per-CPU (whose values are an array per CPU).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use aya::Pod;
use aya_obj::generated::bpf_cmd;

use crate::sys::{Attr, sys_bpf};

/// Entries per syscall. 4096 connection entries are 288 KiB of keys and values: large enough that the
/// syscall's own cost vanishes, small enough to stay in cache.
pub const CHUNK: usize = 4096;

/// The largest bucket a read grows its buffers to (see ENOSPC in [`lookup_batch`]).
const MAX_CHUNK: usize = 1 << 20;

/// `union bpf_attr`'s `batch` member: in_batch, out_batch, keys, values (u64 each), count and map_fd
/// (u32 each, in word 4), elem_flags, flags.
fn batch_attr(
    fd: BorrowedFd<'_>,
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: usize,
) -> Attr {
    let mut attr: Attr = [0; 16];
    attr[0] = in_batch;
    attr[1] = out_batch;
    attr[2] = keys;
    attr[3] = values;
    attr[4] = count as u32 as u64 | (fd.as_raw_fd() as u32 as u64) << 32;
    attr
}

/// The count the kernel wrote back (word 4's low half, `batch.count`).
fn count_of(attr: &Attr) -> usize {
    (attr[4] & 0xffff_ffff) as usize
}

/// A zeroed `T`: every bit pattern is a valid `Pod`.
fn zeroed<T: Pod>() -> T {
    // SAFETY: `Pod` types are plain data for which all-zero bytes are a valid value.
    unsafe { std::mem::zeroed() }
}

/// Reads every entry of map `fd` (a hash map or an array, not per-CPU) with BPF_MAP_LOOKUP_BATCH, up
/// to `chunk` entries per syscall, handing each chunk to `f` as parallel slices of keys and values.
/// Returns how many entries were read.
///
/// # Errors
/// The syscall failed (EINVAL on a kernel without batch support for the map type).
pub(crate) fn lookup_batch<K: Pod, V: Pod>(
    fd: BorrowedFd<'_>,
    chunk: usize,
    f: impl FnMut(&[K], &[V]),
) -> io::Result<usize> {
    let mut token = None;
    walk(fd, chunk, &mut token, usize::MAX, f).map(|(n, _)| n)
}

/// Reads hash map `fd` as [`lookup_batch`] does, but only from bucket `from` on and only until at
/// least `max` entries were read (whole syscalls of up to `chunk`, so a few more may come). Returns how
/// many entries were read and the bucket the walk resumes at, `None` once it reached the end.
///
/// The cursor is a bucket index, not a key: a walk resumed from it is not disturbed by entries deleted
/// in between, where BPF_MAP_GET_NEXT_KEY from a deleted key starts over at the first bucket. A hash
/// map never rehashes, so every key stays in its bucket: one that is there for the whole walk is read
/// exactly once, however the walk is cut.
///
/// # Errors
/// The syscall failed (EINVAL on a kernel without batch support for the map type).
pub(crate) fn lookup_batch_from<K: Pod, V: Pod>(
    fd: BorrowedFd<'_>,
    chunk: usize,
    from: u32,
    max: usize,
    f: impl FnMut(&[K], &[V]),
) -> io::Result<(usize, Option<u32>)> {
    let mut token = Some(bucket_token(from));
    let (n, ended) = walk(fd, chunk, &mut token, max, f)?;
    Ok((
        n,
        if ended {
            None
        } else {
            token.as_deref().map(token_bucket)
        },
    ))
}

/// A hash map's cursor (`__htab_map_lookup_and_delete_batch` reads and writes a u32 bucket index)
/// in the buffer shape [`walk`] uses.
fn bucket_token(bucket: u32) -> Vec<u64> {
    let mut word = [0u8; 8];
    word[..4].copy_from_slice(&bucket.to_ne_bytes());
    vec![u64::from_ne_bytes(word)]
}

fn token_bucket(token: &[u64]) -> u32 {
    let word = token.first().copied().unwrap_or(0).to_ne_bytes();
    u32::from_ne_bytes([word[0], word[1], word[2], word[3]])
}

/// The batch walk: from `token` (`None`: the map's start) until the end or at least `max` entries
/// (more only by the rest of a bucket), leaving in `token` where the next call resumes. Returns how
/// many entries were read and whether the walk reached the end.
fn walk<K: Pod, V: Pod>(
    fd: BorrowedFd<'_>,
    chunk: usize,
    token: &mut Option<Vec<u64>>,
    max: usize,
    mut f: impl FnMut(&[K], &[V]),
) -> io::Result<(usize, bool)> {
    let chunk = chunk.max(1);
    let first_count = chunk.min(max.max(1));
    let mut keys: Vec<K> = vec![zeroed(); first_count];
    let mut vals: Vec<V> = vec![zeroed(); first_count];
    // The least a call asks for: grown past a bucket larger than what was asked (ENOSPC below).
    let mut floor = 1;
    // The cursor: a u32 bucket index for hash maps, a key for arrays (the kernel copies key_size
    // bytes). One buffer in, one out, both large enough for either.
    let token_len = size_of::<K>().max(8).div_ceil(8);
    let mut token_in = token.take().unwrap_or_default();
    token_in.resize(token_len, 0);
    let mut token_out = vec![0u64; token_len];
    // Without a cursor the walk starts at the beginning (in_batch NULL: for an array, a zero key
    // would mean "after key 0").
    let mut first = token_in.iter().all(|w| *w == 0);
    let mut total = 0;
    while total < max {
        // No more than the slice still wants: the kernel stops at whole buckets only.
        let count = chunk.min(max - total).max(floor);
        if count > keys.len() {
            keys.resize(count, zeroed());
            vals.resize(count, zeroed());
        }
        let mut attr = batch_attr(
            fd,
            if first { 0 } else { token_in.as_ptr() as u64 },
            token_out.as_mut_ptr() as u64,
            keys.as_mut_ptr() as u64,
            vals.as_mut_ptr() as u64,
            count,
        );
        let r = sys_bpf(bpf_cmd::BPF_MAP_LOOKUP_BATCH, &mut attr);
        // The kernel never reports more than it was given room for; clamp anyway before slicing.
        let n = count_of(&attr).min(count);
        match r {
            Ok(_) => {}
            // The end of the map, possibly with a last chunk.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                if n > 0 {
                    f(&keys[..n], &vals[..n]);
                }
                return Ok((total + n, true));
            }
            // A hash bucket holds more entries than asked for: the kernel returns whole buckets only.
            // It says so only when nothing was copied; ask for more from the same cursor.
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) && n == 0 && count < MAX_CHUNK => {
                floor = count * 2;
                continue;
            }
            Err(e) => return Err(e),
        }
        f(&keys[..n], &vals[..n]);
        total += n;
        floor = 1;
        std::mem::swap(&mut token_in, &mut token_out);
        first = false;
    }
    *token = Some(token_in);
    Ok((total, false))
}

/// Writes `keys[i] -> vals[i]` into map `fd` with BPF_MAP_UPDATE_BATCH, [`CHUNK`] entries per syscall,
/// with the update flags `elem_flags` (`BPF_ANY` = 0). Returns how many were written.
///
/// # Errors
/// The syscall failed; the entries before the failing one stay written.
///
/// # Panics
/// If `keys` and `vals` differ in length.
pub(crate) fn update_batch<K: Pod, V: Pod>(
    fd: BorrowedFd<'_>,
    keys: &[K],
    vals: &[V],
    elem_flags: u64,
) -> io::Result<usize> {
    assert_eq!(keys.len(), vals.len(), "one value per key");
    let mut done = 0;
    for (k, v) in keys.chunks(CHUNK).zip(vals.chunks(CHUNK)) {
        let mut attr = batch_attr(fd, 0, 0, k.as_ptr() as u64, v.as_ptr() as u64, k.len());
        attr[5] = elem_flags;
        let r = sys_bpf(bpf_cmd::BPF_MAP_UPDATE_BATCH, &mut attr);
        done += count_of(&attr).min(k.len());
        r?;
    }
    Ok(done)
}

/// Deletes `keys` from hash map `fd` with BPF_MAP_DELETE_BATCH, [`CHUNK`] keys per syscall. A key that
/// is not there (evicted, or deleted by someone else meanwhile) is skipped. Returns how many were
/// deleted.
///
/// # Errors
/// The syscall failed otherwise.
pub(crate) fn delete_batch<K: Pod>(fd: BorrowedFd<'_>, keys: &[K]) -> io::Result<usize> {
    let mut deleted = 0;
    let mut rest = keys;
    while !rest.is_empty() {
        let n = rest.len().min(CHUNK);
        let mut attr = batch_attr(fd, 0, 0, rest.as_ptr() as u64, 0, n);
        let r = sys_bpf(bpf_cmd::BPF_MAP_DELETE_BATCH, &mut attr);
        // The kernel deletes in order and stops at the first failure, reporting how many it deleted.
        let ok = count_of(&attr).min(n);
        deleted += ok;
        match r {
            Ok(_) => rest = &rest[n..],
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => rest = &rest[(ok + 1).min(n)..],
            Err(e) => return Err(e),
        }
    }
    Ok(deleted)
}

/// Looks `key` up and deletes it in one step (BPF_MAP_LOOKUP_AND_DELETE_ELEM): the value returned is
/// the one deleted, not one a packet overwrote between a lookup and a delete. `None` if absent.
///
/// # Errors
/// The syscall failed otherwise.
pub(crate) fn lookup_and_delete<K: Pod, V: Pod>(fd: BorrowedFd<'_>, key: &K) -> io::Result<Option<V>> {
    let mut val: V = zeroed();
    let mut attr: Attr = [0; 16];
    // map_fd (u32, then padding), key, value, flags.
    attr[0] = fd.as_raw_fd() as u32 as u64;
    attr[1] = key as *const K as u64;
    attr[2] = &mut val as *mut V as u64;
    match sys_bpf(bpf_cmd::BPF_MAP_LOOKUP_AND_DELETE_ELEM, &mut attr) {
        Ok(_) => Ok(Some(val)),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}
