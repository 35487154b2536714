//! The choice itself: pure logic over a snapshot of the group, no clock, no
//! atomics, no randomness of its own (the caller passes the draw).

/// What the choice knows of one deployment at the moment of a pick.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct View {
    /// Share of traffic among equals: finite and `>= 0`.
    pub(crate) weight: f64,
    /// `order`: the lowest value present among the candidates wins.
    pub(crate) order: Option<u32>,
    /// Its circuit breaker is open.
    pub(crate) open: bool,
    /// This request already tried it.
    pub(crate) tried: bool,
    /// The strategy's reading, lower is better; never NaN.
    pub(crate) score: f64,
}

impl View {
    /// A candidate with nothing against it: closed, untried, weight 1.
    pub(crate) const IDLE: View = View {
        weight: 1.0,
        order: None,
        open: false,
        tried: false,
        score: 0.0,
    };
}

/// Chooses one of `views` (at least one), with `draw` a uniform `u64`:
///
/// 1. the candidates are the deployments whose breaker is not open and that
///    this request has not tried yet; failing that, those not open (a retry
///    goes back to one it tried rather than to an open one); failing that,
///    every deployment (its breaker will reject at once, which is how the
///    caller learns that the whole group is down);
/// 2. priority: among the candidates, only those with the lowest `order`
///    stay, when any has one (LiteLLM's rule: deployments without an
///    `order` are only candidates when no candidate has one);
/// 3. the strategy: only those with the lowest score stay;
/// 4. the shuffle: one of those, with probability proportional to its
///    weight (uniformly when their weights are all zero).
///
/// Each step only narrows the set, so the answer is always in it, and a
/// deployment left out by a step is never chosen while one kept exists.
pub(crate) fn choose(views: &[View], draw: u64) -> usize {
    debug_assert!(!views.is_empty(), "a group has at least one deployment");
    let pool: fn(&View) -> bool = if views.iter().any(|v| !v.open && !v.tried) {
        |v| !v.open && !v.tried
    } else if views.iter().any(|v| !v.open) {
        |v| !v.open
    } else {
        |_| true
    };
    let order = views
        .iter()
        .filter(|v| pool(v))
        .filter_map(|v| v.order)
        .min();
    let in_tier = |v: &View| pool(v) && (order.is_none() || v.order == order);
    let best = views
        .iter()
        .filter(|v| in_tier(v))
        .map(|v| v.score)
        .min_by(f64::total_cmp)
        .unwrap_or(0.0);
    let finalist = |v: &View| in_tier(v) && v.score.total_cmp(&best).is_eq();
    let unit = unit(draw);

    let total: f64 = views.iter().filter(|v| finalist(v)).map(|v| v.weight).sum();
    if total > 0.0 {
        let mut target = unit * total;
        let mut last = None;
        for (index, view) in views.iter().enumerate() {
            if !finalist(view) || view.weight <= 0.0 {
                continue;
            }
            if target < view.weight {
                return index;
            }
            target -= view.weight;
            last = Some(index);
        }
        // Rounding left the target just past the last weight.
        if let Some(index) = last {
            return index;
        }
    }
    let count = views.iter().filter(|v| finalist(v)).count();
    let nth = ((unit * count as f64) as usize).min(count.saturating_sub(1));
    views
        .iter()
        .enumerate()
        .filter(|(_, v)| finalist(v))
        .nth(nth)
        .map_or(0, |(index, _)| index)
}

/// The top 53 bits of `draw` as a fraction in `[0, 1)`.
fn unit(draw: u64) -> f64 {
    (draw >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// The weight LiteLLM's `simple-shuffle` gives each deployment of a group:
/// `weight` when any deployment of the group sets one, else `rpm`, else
/// `tpm`, else 1 for all; a deployment that lacks the measure the group
/// uses weighs 0 (it only serves when no weighted one can), as LiteLLM's
/// `.get("weight", 0)` does.
///
/// Followed: `litellm/router_strategy/simple_shuffle.py` (BerriAI/litellm)
/// and the "Strategies" table of docs.litellm.ai ("`weight`, then `rpm`,
/// then `tpm`, else uniform"). One deliberate difference: LiteLLM picks the
/// measure by looking at the first *healthy* deployment only, so the split
/// changes when that one's breaker opens; here the whole group decides,
/// once, at startup.
///
/// Negative, infinite and NaN values weigh 0.
pub(crate) fn weights(
    measures: &[(Option<f64>, Option<u64>, Option<u64>)],
) -> impl Iterator<Item = f64> + '_ {
    let has_weight = measures.iter().any(|m| m.0.is_some());
    let has_rpm = measures.iter().any(|m| m.1.is_some());
    let has_tpm = measures.iter().any(|m| m.2.is_some());
    measures.iter().map(move |&(weight, rpm, tpm)| {
        let raw = if has_weight {
            weight.unwrap_or(0.0)
        } else if has_rpm {
            rpm.unwrap_or(0) as f64
        } else if has_tpm {
            tpm.unwrap_or(0) as f64
        } else {
            1.0
        };
        if raw.is_finite() && raw > 0.0 {
            raw
        } else {
            0.0
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use proptest::strategy::Strategy;

    fn view() -> impl Strategy<Value = View> {
        (
            prop_oneof![Just(0.0), 0.0..10.0f64],
            proptest::option::of(1u32..4),
            any::<bool>(),
            any::<bool>(),
            prop_oneof![Just(0.0), Just(1.0), -5.0..5.0f64, Just(f64::INFINITY)],
        )
            .prop_map(|(weight, order, open, tried, score)| View {
                weight,
                order,
                open,
                tried,
                score,
            })
    }

    proptest! {
        #[test]
        fn never_picks_what_a_step_left_out(
            views in proptest::collection::vec(view(), 1..12),
            draw in any::<u64>(),
        ) {
            let chosen = choose(&views, draw);
            prop_assert!(chosen < views.len());
            let pick = views[chosen];
            if views.iter().any(|v| !v.open) {
                prop_assert!(!pick.open, "an open deployment while a closed one exists");
            }
            if views.iter().any(|v| !v.open && !v.tried) {
                prop_assert!(!pick.tried, "a tried deployment while an untried one exists");
            }
            let pool: Vec<&View> = views
                .iter()
                .filter(|v| if views.iter().any(|v| !v.open && !v.tried) {
                    !v.open && !v.tried
                } else if views.iter().any(|v| !v.open) {
                    !v.open
                } else {
                    true
                })
                .collect();
            if let Some(order) = pool.iter().filter_map(|v| v.order).min() {
                prop_assert_eq!(pick.order, Some(order), "not the first order");
            }
            let tier: Vec<&&View> = pool
                .iter()
                .filter(|v| pool.iter().filter_map(|v| v.order).min().is_none_or(|o| v.order == Some(o)))
                .collect();
            let best = tier.iter().map(|v| v.score).min_by(f64::total_cmp).unwrap();
            prop_assert!(pick.score.total_cmp(&best).is_eq(), "not the best score");
            let weighted = tier
                .iter()
                .any(|v| v.score.total_cmp(&best).is_eq() && v.weight > 0.0);
            if weighted {
                prop_assert!(pick.weight > 0.0, "a zero weight while a weighted one ties");
            }
        }

        #[test]
        fn weights_are_respected_in_expectation(
            weights in proptest::collection::vec(prop_oneof![Just(0.0), 0.01..100.0f64], 1..8),
            open in proptest::collection::vec(any::<bool>(), 8),
        ) {
            let views: Vec<View> = weights
                .iter()
                .zip(&open)
                .map(|(&weight, &open)| View { weight, open, ..View::IDLE })
                .collect();
            // Draws spread evenly over the whole range: each deployment's
            // count is its share of the equal-score candidates, to rounding.
            const DRAWS: u64 = 1 << 14;
            let mut counts = vec![0u64; views.len()];
            for k in 0..DRAWS {
                counts[choose(&views, k << (64 - 14))] += 1;
            }
            let candidates: Vec<usize> = if views.iter().any(|v| !v.open) {
                (0..views.len()).filter(|&i| !views[i].open).collect()
            } else {
                (0..views.len()).collect()
            };
            let total: f64 = candidates.iter().map(|&i| views[i].weight).sum();
            for (i, &count) in counts.iter().enumerate() {
                let expected = if !candidates.contains(&i) {
                    0.0
                } else if total > 0.0 {
                    DRAWS as f64 * views[i].weight / total
                } else {
                    DRAWS as f64 / candidates.len() as f64
                };
                prop_assert!(
                    (count as f64 - expected).abs() <= 2.0,
                    "deployment {}: {} picks, expected {}", i, count, expected
                );
            }
        }
    }

    #[test]
    fn untried_beats_order_so_a_retry_leaves_the_primary() {
        // order=1 failed once; the retry goes to order=2 rather than back.
        let views = [
            View {
                order: Some(1),
                tried: true,
                ..View::IDLE
            },
            View {
                order: Some(2),
                ..View::IDLE
            },
        ];
        assert_eq!(choose(&views, 0), 1);
        assert_eq!(choose(&views, u64::MAX), 1);
    }

    #[test]
    fn deployments_without_an_order_come_after_those_with_one() {
        let views = [
            View::IDLE,
            View {
                order: Some(7),
                ..View::IDLE
            },
        ];
        for draw in [0, u64::MAX / 2, u64::MAX] {
            assert_eq!(choose(&views, draw), 1);
        }
        let views = [
            View::IDLE,
            View {
                order: Some(7),
                open: true,
                ..View::IDLE
            },
        ];
        assert_eq!(choose(&views, 0), 0);
    }

    #[test]
    fn every_deployment_open_still_picks_one() {
        let views = [
            View {
                open: true,
                order: Some(2),
                ..View::IDLE
            },
            View {
                open: true,
                order: Some(1),
                ..View::IDLE
            },
        ];
        assert_eq!(choose(&views, 0), 1);
    }

    #[test]
    fn lowest_score_wins_and_ties_shuffle_by_weight() {
        let views = [
            View {
                score: 2.0,
                ..View::IDLE
            },
            View {
                score: 1.0,
                weight: 1.0,
                ..View::IDLE
            },
            View {
                score: 1.0,
                weight: 3.0,
                ..View::IDLE
            },
        ];
        assert_eq!(choose(&views, 0), 1);
        assert_eq!(choose(&views, u64::MAX / 4 + 1), 2);
        assert_eq!(choose(&views, u64::MAX), 2);
    }

    #[test]
    fn weights_follow_litellms_precedence() {
        let w = |m: &[(Option<f64>, Option<u64>, Option<u64>)]| weights(m).collect::<Vec<_>>();
        assert_eq!(
            w(&[(Some(2.0), Some(10), None), (None, Some(5), None)]),
            [2.0, 0.0]
        );
        assert_eq!(
            w(&[(None, Some(10), Some(1)), (None, Some(5), Some(9))]),
            [10.0, 5.0]
        );
        assert_eq!(
            w(&[(None, None, Some(100)), (None, None, None)]),
            [100.0, 0.0]
        );
        assert_eq!(w(&[(None, None, None), (None, None, None)]), [1.0, 1.0]);
        assert_eq!(
            w(&[(Some(-1.0), None, None), (Some(f64::NAN), None, None)]),
            [0.0, 0.0]
        );
    }
}
