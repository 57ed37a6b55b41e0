//! Group commit's hand-out, as a pure function: the tickets one claim locked for a whole batch,
//! given to the batch's requests in arrival order. Each request is still all or nothing: one
//! that cannot be filled whole takes nothing, and what it would have taken stays for those
//! after it.

use std::collections::{BTreeMap, VecDeque};

use crate::booking::views::TicketRef;

/// What one request of the batch gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Assignment {
    Tickets(Vec<TicketRef>),
    /// Not enough of some tier: for each tier asked, how many it wanted and how many were left
    /// when its turn came (`VIP wanted 3, 2 left; GA wanted 1, 1 left`).
    Short(String),
}

/// What a batch asks of the claim: per tier, the sum over its requests.
pub fn totals<'a>(wants: impl IntoIterator<Item = &'a [(String, i32)]>) -> Vec<(String, i32)> {
    let mut totals: BTreeMap<&str, i32> = BTreeMap::new();
    for want in wants {
        for (tier, quantity) in want {
            *totals.entry(tier.as_str()).or_default() += quantity;
        }
    }
    totals
        .into_iter()
        .map(|(tier, quantity)| (tier.to_owned(), quantity))
        .collect()
}

/// Hands `claimed` out to `wants` (each a request's (tier, quantity) list), first come first
/// served, in the order the claim returned them (best tickets first).
pub fn assign<'a>(
    claimed: Vec<TicketRef>,
    wants: impl IntoIterator<Item = &'a [(String, i32)]>,
) -> Vec<Assignment> {
    let mut left: BTreeMap<String, VecDeque<i64>> = BTreeMap::new();
    for ticket in claimed {
        left.entry(ticket.tier).or_default().push_back(ticket.id);
    }
    let count = |left: &BTreeMap<String, VecDeque<i64>>, tier: &str| {
        left.get(tier).map_or(0, VecDeque::len)
    };
    wants
        .into_iter()
        .map(|want| {
            let fits = want
                .iter()
                .all(|(tier, quantity)| count(&left, tier) >= *quantity as usize);
            if !fits {
                let message = want
                    .iter()
                    .map(|(tier, quantity)| {
                        let available = count(&left, tier).min(*quantity as usize);
                        format!("{tier} wanted {quantity}, {available} left")
                    })
                    .collect::<Vec<_>>()
                    .join("; ");
                return Assignment::Short(message);
            }
            let mut tickets = Vec::new();
            for (tier, quantity) in want {
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

    fn ids(assignment: &Assignment) -> Vec<i64> {
        match assignment {
            Assignment::Tickets(t) => t.iter().map(|t| t.id).collect(),
            Assignment::Short(m) => panic!("expected tickets, got short: {m}"),
        }
    }

    #[test]
    fn totals_sum_each_tier_over_the_batch() {
        let wants = [want(&[("VIP", 1), ("GA", 2)]), want(&[("GA", 3)])];
        assert_eq!(
            totals(wants.iter().map(Vec::as_slice)),
            [("GA".to_owned(), 5), ("VIP".to_owned(), 1)]
        );
    }

    #[test]
    fn requests_are_served_in_arrival_order_with_the_claims_order_of_tickets() {
        let claimed = [tickets("GA", &[10, 11, 12]), tickets("VIP", &[1])].concat();
        let wants = [want(&[("GA", 2)]), want(&[("VIP", 1), ("GA", 1)])];
        let out = assign(claimed, wants.iter().map(Vec::as_slice));
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
        let out = assign(claimed, wants.iter().map(Vec::as_slice));
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
        let out = assign(Vec::new(), [want(&[("GA", 1)])].iter().map(Vec::as_slice));
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
                let out = assign(claimed.clone(), wants.iter().map(Vec::as_slice));
                let mut given: Vec<i64> = out
                    .iter()
                    .filter_map(|a| match a {
                        Assignment::Tickets(t) => Some(t.iter().map(|t| t.id)),
                        Assignment::Short(_) => None,
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
}
