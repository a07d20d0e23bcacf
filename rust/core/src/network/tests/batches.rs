use super::*;

/// Every step's samples over all ranks, as indices into the whole data set.
fn global_steps(shards: &[usize], batch_size: usize, seed: Option<u64>) -> Vec<Vec<usize>> {
    let mut plans: Vec<Plan> = Vec::new();
    for rank in 0..shards.len() {
        let mut plan = Plan::default();
        let mut rng = seed.map(Rng::new);
        let ranks = Ranks {
            rank,
            shard_rows: shards,
        };
        plan.make(ranks, batch_size, rng.as_mut());
        plans.push(plan);
    }
    let first: Vec<usize> = shards
        .iter()
        .scan(0, |end, &rows| {
            let start = *end;
            *end += rows;
            Some(start)
        })
        .collect();
    let steps = plans[0].steps.len();
    (0..steps)
        .map(|s| {
            let mut all = Vec::new();
            for (r, plan) in plans.iter().enumerate() {
                assert_eq!(plan.steps.len(), steps, "every rank takes every step");
                let step = plan.steps[s];
                assert_eq!(
                    step.offset,
                    all.len(),
                    "shares follow each other in rank order"
                );
                assert_eq!(step.global_rows, plans[0].steps[s].global_rows);
                for k in 0..step.rows {
                    let local = if seed.is_some() {
                        plan.order[step.start + k]
                    } else {
                        step.start + k
                    };
                    assert!(local < shards[r]);
                    all.push(first[r] + local);
                }
            }
            assert_eq!(all.len(), plans[0].steps[s].global_rows);
            all
        })
        .collect()
}

#[test]
fn a_shuffled_epoch_alone_is_sorted_chunks_of_the_generators_permutation() {
    let mut rng = Rng::new(7);
    let mut perm: Vec<usize> = (0..23).collect();
    rng.shuffle(&mut perm);
    let steps = global_steps(&[23], 5, Some(7));
    let want: Vec<Vec<usize>> = perm
        .chunks(5)
        .map(|c| {
            let mut c = c.to_vec();
            c.sort_unstable();
            c
        })
        .collect();
    assert_eq!(steps, want);
}

#[test]
fn shuffled_ranks_take_the_batches_of_one_process_on_the_whole_data() {
    for shards in [vec![12, 11], vec![30, 1, 7], vec![5, 5, 5, 5]] {
        let total: usize = shards.iter().sum();
        let k = shards.len();
        let alone = global_steps(&[total], 4 * k, Some(3));
        assert_eq!(
            global_steps(&shards, 4, Some(3)),
            alone,
            "shards {shards:?}"
        );
    }
}

#[test]
fn in_order_every_rank_gives_its_next_rows_to_every_step() {
    let steps = global_steps(&[5, 3], 2, None);
    assert_eq!(
        steps,
        vec![vec![0, 1, 5, 6], vec![2, 3, 7], vec![4]],
        "rank 1's rows start at 5"
    );
    assert_eq!(
        global_steps(&[7], 3, None),
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
