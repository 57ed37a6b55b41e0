//! Group commit's hand-out, as a pure function: the tickets one claim locked for a whole batch,
//! given to the batch's requests in arrival order. Each request is still all or nothing: one
//! that cannot be filled whole takes nothing, and what it would have taken stays for those
//! after it. A request that would take its holder past the event's per-user cap takes nothing
//! either, counting what the holder had before the batch and what earlier requests of the same
//! batch just gave them.

use std::collections::{BTreeMap, HashMap, VecDeque};

use crate::booking::views::TicketRef;

/// One request of the batch, as the hand-out sees it.
#[derive(Debug, Clone, Copy)]
pub struct Want<'a> {
    pub holder: i64,
    /// Most tickets of the event `holder` may hold or have bought.
    pub cap: i64,
    /// (tier, quantity), each tier once.
    pub tiers: &'a [(String, i32)],
}

impl Want<'_> {
    fn quantity(&self) -> i64 {
        self.tiers.iter().map(|(_, q)| i64::from(*q)).sum()
    }

    /// Whether the request fits its holder's cap on top of `held`.
    fn fits_cap(&self, held: i64) -> bool {
        held + self.quantity() <= self.cap
    }
}

/// What one request of the batch gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Assignment {
    Tickets(Vec<TicketRef>),
    /// Not enough of some tier: for each tier asked, how many it wanted and how many were left
    /// when its turn came (`VIP wanted 3, 2 left; GA wanted 1, 1 left`).
    Short(String),
    /// Over the holder's cap: they held `held` of at most `cap` when its turn came.
    OverCap {
        cap: i64,
        held: i64,
    },
}

/// What a batch asks of the claim: per tier, the sum over its requests, leaving out those that
/// could not fit their holder's cap even first in line (`held`: tickets per holder before the
/// batch).
pub fn totals(wants: &[Want], held: &HashMap<i64, i64>) -> Vec<(String, i32)> {
    let mut totals: BTreeMap<&str, i32> = BTreeMap::new();
    for want in wants {
        if !want.fits_cap(held.get(&want.holder).copied().unwrap_or(0)) {
            continue;
        }
        for (tier, quantity) in want.tiers {
            *totals.entry(tier.as_str()).or_default() += quantity;
        }
    }
    totals
        .into_iter()
        .map(|(tier, quantity)| (tier.to_owned(), quantity))
        .collect()
}

/// Hands `claimed` out to `wants`, first come first served, in the order the claim returned
/// them (best tickets first). `held` is what each holder held or had bought of the event before
/// the batch; a request checks its cap before its tiers, and only a request that gets its
/// tickets adds to its holder's count.
pub fn assign(
    claimed: Vec<TicketRef>,
    wants: &[Want],
    mut held: HashMap<i64, i64>,
) -> Vec<Assignment> {
    let mut left: BTreeMap<String, VecDeque<i64>> = BTreeMap::new();
    for ticket in claimed {
        left.entry(ticket.tier).or_default().push_back(ticket.id);
    }
    let count = |left: &BTreeMap<String, VecDeque<i64>>, tier: &str| {
        left.get(tier).map_or(0, VecDeque::len)
    };
    wants
        .iter()
        .map(|want| {
            let holds = held.entry(want.holder).or_insert(0);
            if !want.fits_cap(*holds) {
                return Assignment::OverCap {
                    cap: want.cap,
                    held: *holds,
                };
            }
            let fits = want
                .tiers
                .iter()
                .all(|(tier, quantity)| count(&left, tier) >= *quantity as usize);
            if !fits {
                let message = want
                    .tiers
                    .iter()
                    .map(|(tier, quantity)| {
                        let available = count(&left, tier).min(*quantity as usize);
                        format!("{tier} wanted {quantity}, {available} left")
                    })
                    .collect::<Vec<_>>()
                    .join("; ");
                return Assignment::Short(message);
            }
            *holds += want.quantity();
            let mut tickets = Vec::new();
            for (tier, quantity) in want.tiers {
                let pool = left.get_mut(tier).expect("checked above");
                tickets.extend(pool.drain(..*quantity as usize).map(|id| TicketRef {
                    id,
                    tier: tier.clone(),
                }));
            }
            Assignment::Tickets(tickets)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tickets(tier: &str, ids: &[i64]) -> Vec<TicketRef> {
        ids.iter()
            .map(|&id| TicketRef {
                id,
                tier: tier.into(),
            })
            .collect()
    }

    fn want(list: &[(&str, i32)]) -> Vec<(String, i32)> {
        list.iter().map(|(t, q)| (t.to_string(), *q)).collect()
    }

    /// Each request by a holder of its own, with room to spare under the cap.
    fn uncapped(wants: &[Vec<(String, i32)>]) -> Vec<Want<'_>> {
        wants
            .iter()
            .enumerate()
            .map(|(i, tiers)| Want {
                holder: i as i64 + 1,
                cap: 1_000,
                tiers,
            })
            .collect()
    }

    /// Every request by holder 7, with cap `cap`.
    fn one_holder(wants: &[Vec<(String, i32)>], cap: i64) -> Vec<Want<'_>> {
        wants
            .iter()
            .map(|tiers| Want {
                holder: 7,
                cap,
                tiers,
            })
            .collect()
    }

    fn ids(assignment: &Assignment) -> Vec<i64> {
        match assignment {
            Assignment::Tickets(t) => t.iter().map(|t| t.id).collect(),
            other => panic!("expected tickets, got {other:?}"),
        }
    }

    #[test]
    fn totals_sum_each_tier_over_the_batch() {
        let wants = [want(&[("VIP", 1), ("GA", 2)]), want(&[("GA", 3)])];
        assert_eq!(
            totals(&uncapped(&wants), &HashMap::new()),
            [("GA".to_owned(), 5), ("VIP".to_owned(), 1)]
        );
    }

    #[test]
    fn requests_are_served_in_arrival_order_with_the_claims_order_of_tickets() {
        let claimed = [tickets("GA", &[10, 11, 12]), tickets("VIP", &[1])].concat();
        let wants = [want(&[("GA", 2)]), want(&[("VIP", 1), ("GA", 1)])];
        let out = assign(claimed, &uncapped(&wants), HashMap::new());
        assert_eq!(ids(&out[0]), [10, 11]);
        assert_eq!(ids(&out[1]), [1, 12]);
    }

    #[test]
    fn a_request_that_cannot_be_filled_whole_takes_nothing_and_later_ones_still_can() {
        let claimed = [tickets("VIP", &[1, 2]), tickets("GA", &[10])].concat();
        let wants = [
            want(&[("VIP", 3)]),
            want(&[("VIP", 1), ("GA", 2)]),
            want(&[("VIP", 2), ("GA", 1)]),
            want(&[("VIP", 1)]),
        ];
        let out = assign(claimed, &uncapped(&wants), HashMap::new());
        assert_eq!(out[0], Assignment::Short("VIP wanted 3, 2 left".into()));
        assert_eq!(
            out[1],
            Assignment::Short("VIP wanted 1, 1 left; GA wanted 2, 1 left".into())
        );
        assert_eq!(ids(&out[2]), [1, 2, 10]);
        assert_eq!(out[3], Assignment::Short("VIP wanted 1, 0 left".into()));
    }

    #[test]
    fn a_tier_the_claim_found_none_of_is_short_by_all_of_it() {
        let out = assign(Vec::new(), &uncapped(&[want(&[("GA", 1)])]), HashMap::new());
        assert_eq!(out, [Assignment::Short("GA wanted 1, 0 left".into())]);
    }

    #[test]
    fn no_ticket_is_handed_out_twice_whatever_the_batch() {
        // Every mix of three requests over two tiers with up to three tickets each.
        let claimed = [tickets("A", &[1, 2, 3]), tickets("B", &[4, 5, 6])].concat();
        for a in 0..=3 {
            for b in 0..=3 {
                let wants = [
                    want(&[("A", a.max(1)), ("B", b)]),
                    want(&[("B", b.max(1))]),
                    want(&[("A", 3 - a)]),
                ];
                let out = assign(claimed.clone(), &uncapped(&wants), HashMap::new());
                let mut given: Vec<i64> = out
                    .iter()
                    .filter_map(|a| match a {
                        Assignment::Tickets(t) => Some(t.iter().map(|t| t.id)),
                        _ => None,
                    })
                    .flatten()
                    .collect();
                let n = given.len();
                given.sort();
                given.dedup();
                assert_eq!(given.len(), n, "a ticket given twice for {wants:?}");
            }
        }
    }

    #[test]
    fn a_holders_requests_in_one_batch_share_the_cap_in_arrival_order() {
        // Holder 7 had 2 of a cap of 6: 3 fits, then 2 does not (5 + 2 > 6) but 1 still does.
        let claimed = tickets("GA", &[1, 2, 3, 4, 5, 6, 7, 8]);
        let wants = [
            want(&[("GA", 3)]),
            want(&[("GA", 2)]),
            want(&[("GA", 1)]),
            want(&[("GA", 1)]),
        ];
        let out = assign(claimed, &one_holder(&wants, 6), HashMap::from([(7, 2)]));
        assert_eq!(ids(&out[0]), [1, 2, 3]);
        assert_eq!(out[1], Assignment::OverCap { cap: 6, held: 5 });
        assert_eq!(ids(&out[2]), [4]);
        assert_eq!(out[3], Assignment::OverCap { cap: 6, held: 6 });
    }

    #[test]
    fn a_refused_request_takes_nothing_from_its_holders_cap() {
        let claimed = tickets("GA", &[1, 2]);
        let wants = [want(&[("VIP", 1), ("GA", 2)]), want(&[("GA", 2)])];
        let out = assign(claimed, &one_holder(&wants, 2), HashMap::new());
        assert_eq!(
            out[0],
            Assignment::OverCap { cap: 2, held: 0 },
            "three tickets never fit a cap of two"
        );
        assert_eq!(ids(&out[1]), [1, 2]);

        let claimed = tickets("GA", &[1, 2]);
        let wants = [want(&[("VIP", 1)]), want(&[("GA", 2)])];
        let out = assign(claimed, &one_holder(&wants, 2), HashMap::new());
        assert_eq!(out[0], Assignment::Short("VIP wanted 1, 0 left".into()));
        assert_eq!(ids(&out[1]), [1, 2]);
    }

    #[test]
    fn an_over_cap_request_leaves_its_tickets_to_others_and_caps_are_per_holder() {
        let claimed = tickets("GA", &[1, 2, 3]);
        let tiers = [want(&[("GA", 2)]), want(&[("GA", 2)])];
        let wants = [
            Want {
                holder: 1,
                cap: 4,
                tiers: &tiers[0],
            },
            Want {
                holder: 2,
                cap: 4,
                tiers: &tiers[1],
            },
        ];
        let out = assign(claimed, &wants, HashMap::from([(1, 3), (2, 2)]));
        assert_eq!(out[0], Assignment::OverCap { cap: 4, held: 3 });
        assert_eq!(ids(&out[1]), [1, 2]);
    }

    #[test]
    fn the_claim_leaves_out_requests_that_cannot_fit_their_cap_even_first() {
        let wants = [want(&[("GA", 2)]), want(&[("GA", 4)]), want(&[("VIP", 1)])];
        // Holder 7 holds 3 of 6: 2 and 1 could each fit first, 4 never can.
        assert_eq!(
            totals(&one_holder(&wants, 6), &HashMap::from([(7, 3)])),
            [("GA".to_owned(), 2), ("VIP".to_owned(), 1)]
        );
        assert!(totals(&one_holder(&wants, 6), &HashMap::from([(7, 6)])).is_empty());
    }

    #[test]
    fn no_holder_ever_passes_the_cap_whatever_the_batch() {
        // Every batch of up to four requests of 1 to 3 tickets by two holders, cap 4, from
        // every starting count.
        let claimed = tickets("GA", &(1..=20).collect::<Vec<_>>());
        let sizes: Vec<Vec<(String, i32)>> = (1..=3).map(|q| want(&[("GA", q)])).collect();
        for batch in 0..(3u32.pow(4) * 16) {
            let (mut code, mut wants) = (batch, Vec::new());
            for n in 0..4 {
                wants.push(Want {
                    holder: i64::from(n % 2),
                    cap: 4,
                    tiers: &sizes[(code % 3) as usize],
                });
                code /= 3;
            }
            let before = HashMap::from([(0, i64::from(code % 4)), (1, i64::from(code / 4 % 4))]);
            let out = assign(claimed.clone(), &wants, before.clone());
            let mut after = before.clone();
            for (want, assignment) in wants.iter().zip(&out) {
                let holds = after.entry(want.holder).or_default();
                match assignment {
                    Assignment::Tickets(t) => *holds += t.len() as i64,
                    // Refused only when it truly would not fit.
                    Assignment::OverCap { held, .. } => {
                        assert_eq!(*held, *holds);
                        assert!(*held + want.quantity() > 4);
                    }
                    Assignment::Short(m) => panic!("twenty tickets ran short: {m}"),
                }
            }
            for (holder, count) in after {
                assert!(count <= 4, "holder {holder} got to {count}");
            }
        }
    }
}
