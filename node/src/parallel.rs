//! Work spread over every core, results in input order: signing and
//! verifying are most of the CPU of a bulk write, an initial sync and a
//! rebuild, and one core would otherwise idle.

/// Most threads a call starts, whatever the machine.
const MAX_THREADS: usize = 8;
/// Below this many items a call runs on the caller's thread: a thread
/// costs more than it saves.
const MIN_PER_THREAD: usize = 8;

/// `f` applied to every item, on up to every core, in input order.
pub fn map<T, U, F>(items: Vec<T>, f: F) -> Vec<U>
where
    T: Send,
    U: Send,
    F: Fn(T) -> U + Sync,
{
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, MAX_THREADS)
        .min(items.len() / MIN_PER_THREAD)
        .max(1);
    if threads == 1 {
        return items.into_iter().map(f).collect();
    }
    let per = items.len().div_ceil(threads);
    let mut parts: Vec<Vec<T>> = Vec::with_capacity(threads);
    let mut rest = items;
    while rest.len() > per {
        let tail = rest.split_off(per);
        parts.push(rest);
        rest = tail;
    }
    parts.push(rest);
    let f = &f;
    std::thread::scope(|scope| {
        let handles: Vec<_> = parts
            .into_iter()
            .map(|part| scope.spawn(move || part.into_iter().map(f).collect::<Vec<U>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_keep_the_input_order_at_every_size() {
        for n in [0, 1, 7, 8, 17, 100, 1001] {
            let out = map((0..n).collect::<Vec<u64>>(), |x| x * 2);
            assert_eq!(out, (0..n).map(|x| x * 2).collect::<Vec<_>>(), "n = {n}");
        }
    }

    #[test]
    fn a_panic_in_a_worker_reaches_the_caller() {
        let r = std::panic::catch_unwind(|| {
            map((0..100).collect::<Vec<u32>>(), |x| {
                assert!(x != 77, "boom");
                x
            })
        });
        assert!(r.is_err());
    }
}
