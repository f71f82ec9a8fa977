//! A connection's subscriptions and the rules that make delivery gap-free and
//! duplicate-free.
//!
//! Each subscription `t` has `since` (what the client has already seen) and `until` (the
//! hub head read right after `t` was registered with the router). The hub moves its head
//! only after routing an event, so:
//! - every event of `t` with `seq > until` reaches the connection's queue (live path);
//! - every event of `t` with `since < seq <= until` is read by the replay.
//!
//! An event is sent at most once per connection even when several subscriptions match it:
//! - **live**: send `e` if some subscription `t ∋ e` has `e.seq > t.until` (and may see it);
//! - **replay** of a new subscription `T`: send `e` unless another subscription `t' ∋ e` with
//!   `e.seq > t'.since` already covers it (then it was sent, or sits in the queue and the
//!   live rule sends it). Before a replay the queue is drained and merged with the replayed
//!   events in seq order, so events of `T` go out in order.

use std::sync::Arc;

use crate::domain::{Actor, Topic, TopicKind};
use crate::hub::{Event, Owner};

/// One subscription.
#[derive(Debug, Clone)]
pub struct Sub {
    /// The topic.
    pub topic: Topic,
    /// Events at or before this were seen by the client.
    pub since: i64,
    /// The hub head when the subscription was registered: the replay's upper bound.
    pub until: i64,
}

/// The subscriptions of one connection.
#[derive(Debug, Default)]
pub struct Subs {
    list: Vec<Sub>,
}

/// What to do with a live event.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Decision {
    /// Send it.
    pub deliver: bool,
    /// Subscriptions whose record the actor may no longer see: end them.
    pub lost: Vec<Topic>,
}

impl Subs {
    /// Number of subscriptions.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Whether `topic` is subscribed.
    pub fn contains(&self, topic: Topic) -> bool {
        self.list.iter().any(|s| s.topic == topic)
    }

    /// Adds or replaces a subscription.
    pub fn insert(&mut self, sub: Sub) {
        self.remove(sub.topic);
        self.list.push(sub);
    }

    /// Removes a subscription; true when it existed.
    pub fn remove(&mut self, topic: Topic) -> bool {
        let before = self.list.len();
        self.list.retain(|s| s.topic != topic);
        self.list.len() != before
    }

    /// The topics.
    pub fn topics(&self) -> impl Iterator<Item = Topic> + '_ {
        self.list.iter().map(|s| s.topic)
    }

    /// The live rule (see the module docs), with access checks.
    pub fn live(&self, actor: &Actor, e: &Event) -> Decision {
        let mut d = Decision::default();
        for s in &self.list {
            if !e.topics.contains(&s.topic) || !(e.ephemeral || e.seq > s.until) {
                continue;
            }
            match access(actor, s.topic, e) {
                Access::Yes => d.deliver = true,
                Access::Filtered => {}
                Access::Lost => d.lost.push(s.topic),
            }
        }
        d
    }

    /// Whether a subscription other than the new ones covers `e` (see the module docs).
    fn covered(&self, actor: &Actor, e: &Event, new: &[Topic]) -> bool {
        self.list.iter().any(|s| {
            !new.contains(&s.topic)
                && e.topics.contains(&s.topic)
                && e.seq > s.since
                && access(actor, s.topic, e) == Access::Yes
        })
    }

    /// Merges the replays of the new subscriptions `new` (already inserted, subscribed in one
    /// frame) with the events held from the queue, in seq order: what to send, and
    /// subscriptions that lost access. One merged pass keeps every topic in order, which
    /// replaying the topics one after another would not (an event of two topics would go
    /// out with the first, ahead of older events of the second).
    pub fn merge(
        &self,
        actor: &Actor,
        new: &[Topic],
        replayed: Vec<Arc<Event>>,
        held: Vec<Arc<Event>>,
    ) -> (Vec<Arc<Event>>, Vec<Topic>) {
        let mut lost = Vec::new();
        let mut all: Vec<(Arc<Event>, bool)> = replayed
            .into_iter()
            .map(|e| (e, true))
            .chain(held.into_iter().map(|e| (e, false)))
            .collect();
        // Real events by seq; ephemeral ones after the real event of the same position.
        all.sort_by_key(|(e, _)| (e.seq, e.ephemeral));
        let mut out: Vec<Arc<Event>> = Vec::with_capacity(all.len());
        let mut i = 0;
        while i < all.len() {
            let (e, from_replay) = (&all[i].0, all[i].1);
            if e.ephemeral {
                if self.live(actor, e).deliver {
                    out.push(e.clone());
                }
                i += 1;
                continue;
            }
            // Both copies of one seq (replayed and held) decide together.
            let mut in_replay = from_replay;
            let mut in_held = !from_replay;
            let mut j = i + 1;
            while j < all.len() && all[j].0.seq == e.seq && !all[j].0.ephemeral {
                in_replay |= all[j].1;
                in_held |= !all[j].1;
                j += 1;
            }
            let live = if in_held {
                let d = self.live(actor, e);
                lost.extend(d.lost);
                d.deliver
            } else {
                false
            };
            let replay = in_replay
                && (in_held || !self.covered(actor, e, new))
                && new
                    .iter()
                    .any(|t| e.topics.contains(t) && access(actor, *t, e) == Access::Yes);
            if live || replay {
                out.push(e.clone());
            }
            i = j;
        }
        lost.sort();
        lost.dedup();
        (out, lost)
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Access {
    Yes,
    /// Not for this actor (a department queue's non-shared dialog of someone else).
    Filtered,
    /// The record the subscription follows is no longer visible.
    Lost,
}

fn access(actor: &Actor, topic: Topic, e: &Event) -> Access {
    let visible = |o: &Owner| o.visible_to(actor);
    match topic.kind {
        TopicKind::Dialog | TopicKind::Client | TopicKind::Lead | TopicKind::Interest => {
            match &e.owner {
                Some(o) if e.is_root_of(topic) && !visible(o) => Access::Lost,
                _ => Access::Yes,
            }
        }
        TopicKind::Dept => match &e.owner {
            Some(o) if !visible(o) => Access::Filtered,
            _ => Access::Yes,
        },
        // A personal canned response is its owner's alone, also for the supervisors and
        // admins who follow that user's work (as over REST, where it is not found for them).
        TopicKind::User => match &e.owner {
            Some(o) if &*e.entity == "canned_response" && o.user_id != actor.user_id() => {
                Access::Filtered
            }
            _ => Access::Yes,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ChangeEntry, Role, Timestamp};

    fn ev(seq: i64, topics: Vec<Topic>) -> Arc<Event> {
        Arc::new(Event::from_entry(&ChangeEntry {
            seq,
            at: Timestamp(0),
            actor_user_id: None,
            actor_api_key_id: None,
            entity: "message".into(),
            entity_id: seq,
            op: "create".into(),
            data: serde_json::json!({}),
            client_id: None,
            lead_id: None,
            interest_id: None,
            dialog_id: None,
            department_id: None,
            topics,
            owner_id: None,
            shared: None,
        }))
    }

    const OP: Actor = Actor::User {
        id: 3,
        role: Role::Operator,
        department_id: Some(1),
    };

    #[test]
    fn live_sends_once_after_until() {
        let mut s = Subs::default();
        s.insert(Sub {
            topic: Topic::user(3),
            since: 0,
            until: 10,
        });
        s.insert(Sub {
            topic: Topic::dialog(7),
            since: 0,
            until: 20,
        });
        assert!(!s.live(&OP, &ev(10, vec![Topic::user(3)])).deliver);
        assert!(s.live(&OP, &ev(11, vec![Topic::user(3)])).deliver);
        assert!(!s.live(&OP, &ev(15, vec![Topic::dialog(7)])).deliver);
        assert!(
            s.live(&OP, &ev(15, vec![Topic::dialog(7), Topic::user(3)]))
                .deliver
        );
        assert!(s.live(&OP, &ev(21, vec![Topic::dialog(7)])).deliver);
    }

    #[test]
    fn personal_canned_responses_reach_only_their_owner() {
        let personal = |seq: i64, owner: i64| {
            Arc::new(Event::from_entry(&ChangeEntry {
                seq,
                at: Timestamp(0),
                actor_user_id: Some(owner),
                actor_api_key_id: None,
                entity: "canned_response".into(),
                entity_id: seq,
                op: "create".into(),
                data: serde_json::json!({}),
                client_id: None,
                lead_id: None,
                interest_id: None,
                dialog_id: None,
                department_id: None,
                topics: vec![Topic::user(owner)],
                owner_id: Some(owner),
                shared: Some(false),
            }))
        };
        let sup = Actor::User {
            id: 9,
            role: Role::Supervisor,
            department_id: Some(1),
        };
        let admin = Actor::User {
            id: 1,
            role: Role::Admin,
            department_id: None,
        };
        let mut s = Subs::default();
        s.insert(Sub {
            topic: Topic::user(3),
            since: 0,
            until: 0,
        });
        assert!(s.live(&OP, &personal(1, 3)).deliver);
        assert!(!s.live(&sup, &personal(2, 3)).deliver);
        assert!(!s.live(&admin, &personal(3, 3)).deliver);
        // Other events on the user's topic still reach whoever follows it.
        assert!(s.live(&sup, &ev(4, vec![Topic::user(3)])).deliver);
        let (out, _) = s.merge(&sup, &[Topic::user(3)], vec![personal(5, 3)], vec![]);
        assert!(out.is_empty());
    }

    #[test]
    fn merge_orders_and_dedupes() {
        let mut s = Subs::default();
        s.insert(Sub {
            topic: Topic::user(3),
            since: 0,
            until: 10,
        });
        // Subscribing dialog:7 since 5 at head 14.
        s.insert(Sub {
            topic: Topic::dialog(7),
            since: 5,
            until: 14,
        });
        let d7 = Topic::dialog(7);
        let u3 = Topic::user(3);
        let replayed = vec![
            ev(6, vec![d7]),      // not covered: send
            ev(8, vec![d7, u3]),  // covered by user:3 (8 > 0), not held: already sent
            ev(12, vec![d7, u3]), // covered and held: sent once, by the live rule
            ev(13, vec![d7]),     // replay only
        ];
        let held = vec![ev(12, vec![d7, u3]), ev(15, vec![d7])];
        let (out, lost) = s.merge(&OP, &[d7], replayed, held);
        let seqs: Vec<i64> = out.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, vec![6, 12, 13, 15]);
        assert!(lost.is_empty());
    }
}
