use super::*;

fn alone_steps(n: usize, batch_size: usize, seed: Option<u64>) -> Vec<Vec<usize>> {
    let rng = seed.map(Rng::new);
    epoch_order(&[n], batch_size, rng.as_ref(), 1).remove(0)
}

#[test]
fn a_shuffled_epoch_alone_is_sorted_chunks_of_the_generators_permutation() {
    let mut rng = Rng::new(7);
    let mut perm: Vec<usize> = (0..23).collect();
    rng.shuffle(&mut perm);
    let want: Vec<Vec<usize>> = perm
        .chunks(5)
        .map(|c| {
            let mut c = c.to_vec();
            c.sort_unstable();
            c
        })
        .collect();
    assert_eq!(alone_steps(23, 5, Some(7)), want);
}

#[test]
fn shuffled_ranks_take_equal_shares_of_their_own_permuted_shards() {
    let shards = [12, 11, 12];
    let rng = Rng::new(3);
    let epochs = epoch_order(&shards, 4, Some(&rng), 2);
    assert_ne!(epochs[0], epochs[1], "each epoch draws anew");
    for steps in &epochs {
        assert_eq!(steps.len(), 3);
        let mut seen = vec![0usize; 35];
        for (s, step) in steps.iter().enumerate() {
            // Rank r's share is its shard's rows, sorted, rank after rank.
            let bounds = [0, 12, 23, 35];
            let mut rest = &step[..];
            for r in 0..3 {
                let rows = (shards[r] - s * 4).min(4);
                let (share, after) = rest.split_at(rows);
                assert!(share.iter().all(|&i| bounds[r] <= i && i < bounds[r + 1]));
                assert!(share.windows(2).all(|w| w[0] < w[1]), "sorted share");
                rest = after;
            }
            assert!(rest.is_empty());
            step.iter().for_each(|&i| seen[i] += 1);
        }
        assert!(seen.iter().all(|&k| k == 1), "every sample once per epoch");
    }
}

#[test]
fn every_rank_plans_the_same_steps_and_leaves_the_generator_alike() {
    let shards = [9, 8];
    let mut next = Vec::new();
    for rank in 0..2 {
        let mut plan = Plan::default();
        let mut rng = Rng::new(11);
        plan.make(
            Ranks {
                rank,
                shard_rows: &shards,
            },
            3,
            Some(&mut rng),
        );
        let sizes: Vec<usize> = plan.steps.iter().map(|s| s.global_rows).collect();
        next.push((sizes, rng.next_u64()));
    }
    assert_eq!(next[0], next[1]);
}

#[test]
fn a_group_of_one_takes_a_lone_process_steps() {
    let rng = Rng::new(5);
    assert_eq!(
        epoch_order(&[17], 4, Some(&rng), 3),
        (0..3)
            .scan(rng.clone(), |r, _| {
                let mut plan = Plan::default();
                plan.make(
                    Ranks {
                        rank: 0,
                        shard_rows: &[17],
                    },
                    4,
                    Some(r),
                );
                Some(
                    plan.steps
                        .iter()
                        .map(|s| plan.share_of(s, true).collect())
                        .collect::<Vec<Vec<usize>>>(),
                )
            })
            .collect::<Vec<_>>()
    );
}

#[test]
fn in_order_every_rank_gives_its_next_rows_to_every_step() {
    let steps = epoch_order(&[5, 3], 2, None, 1).remove(0);
    assert_eq!(
        steps,
        vec![vec![0, 1, 5, 6], vec![2, 3, 7], vec![4]],
        "rank 1's rows start at 5"
    );
    assert_eq!(
        alone_steps(7, 3, None),
        vec![vec![0, 1, 2], vec![3, 4, 5], vec![6]]
    );
}

#[test]
fn the_smallest_share_names_its_rank_and_step() {
    let mut plan = Plan::default();
    let shards = [5, 3];
    plan.make(
        Ranks {
            rank: 0,
            shard_rows: &shards,
        },
        2,
        None,
    );
    assert_eq!(
        plan.smallest_share,
        Some((1, 1, 1)),
        "rank 1 has one row in step 1"
    );
    plan.make(
        Ranks {
            rank: 0,
            shard_rows: &[4, 4],
        },
        2,
        None,
    );
    assert_eq!(plan.smallest_share, Some((2, 0, 0)));
}

#[test]
fn shares_are_the_sorted_chunks_of_the_permutation() {
    let mut rng = Rng::new(21);
    for (rows, batch_size) in [(1, 1), (10, 3), (64, 16), (1000, 7), (1000, 1000), (5, 9)] {
        let mut permutation: Vec<usize> = (0..rows).collect();
        rng.shuffle(&mut permutation);
        let mut want = Vec::new();
        for chunk in permutation.chunks(batch_size) {
            let mut chunk = chunk.to_vec();
            chunk.sort_unstable();
            want.extend(chunk);
        }
        let mut plan = Plan::default();
        plan.order.push(usize::MAX); // what the plan already holds stays first
        plan.sort_shares(&permutation, batch_size);
        assert_eq!(plan.order[0], usize::MAX);
        assert_eq!(
            plan.order[1..],
            want[..],
            "{rows} rows in batches of {batch_size}"
        );
    }
}
