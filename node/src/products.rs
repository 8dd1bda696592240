//! Products and deals' line items.
//!
//! A line item is a record of its own (like Salesforce's opportunity
//! products and HubSpot's line items), not a list inside its deal: two
//! people adding lines to one deal on two devices at once add two records,
//! and neither line is lost when they sync.
//!
//! A deal with priced lines has their total as its amount and currency
//! (see [`rapport_model::products`]), unless its `manual_amount` flag says
//! the amount is set by hand. The total is written into the deal as an
//! ordinary signed edit, so that lists, filters, the board, reports and
//! exports read one amount. The node that writes a line settles its deal
//! at once; lines that arrive from peers are settled when they are applied,
//! by every member who may write the deal. Two nodes that settle at once
//! write the same total, from the same lines, so their edits agree.

use std::collections::BTreeMap;

use rapport_model::products::{Total, total};
use rapport_model::{Edit, FieldValue, Kind, RecordId, RecordView, RuleError};

use crate::{NodeError, Repo};

/// A deal whose amount may have to follow its lines, and whether a line
/// left it (deleted, merged away or moved to another deal): only then
/// does a deal left with no lines lose the amount they gave it.
pub(crate) type ToSettle = (RecordId, bool);

/// The deals whose amount may have to follow their lines after `new` was
/// written over `old`: a line's deal (both, for a line moved to another
/// deal), and a deal not set by hand whose amount changed or that was set
/// by hand until now. (A peer's edit of the amount may be a total of
/// fewer lines, written at the same time as another's of more.)
pub(crate) fn deals_to_settle(old: Option<&RecordView>, new: &RecordView) -> Vec<ToSettle> {
    let deal_of = |v: &RecordView| v.text("deal").and_then(|d| d.parse::<RecordId>().ok());
    match new.kind {
        Kind::LineItem => {
            let gone = new.deleted || new.merged_into.is_some();
            let (before, now) = (old.and_then(deal_of), deal_of(new));
            let mut deals = Vec::new();
            if let Some(b) = before.filter(|b| Some(*b) != now) {
                deals.push((b, true));
            }
            if let Some(n) = now {
                deals.push((n, gone));
            }
            deals
        }
        Kind::Deal
            if !manual(new)
                && old.is_some_and(|old| {
                    manual(old)
                        || old.text("amount") != new.text("amount")
                        || old.text("currency") != new.text("currency")
                }) =>
        {
            vec![(new.id, false)]
        }
        _ => Vec::new(),
    }
}

/// A deal's live lines among the records that refer to it (`(field,
/// record)`, as [`Repo::related`] gives them), oldest first: those of its
/// space only (a line elsewhere is refused when written, and never counts:
/// its price would reach members who cannot see it).
pub fn lines_among<'a>(
    deal: &RecordView,
    related: impl IntoIterator<Item = (&'a str, &'a RecordView)>,
) -> Vec<&'a RecordView> {
    let mut lines: Vec<&RecordView> = related
        .into_iter()
        .filter(|(field, v)| {
            *field == "deal"
                && v.kind == Kind::LineItem
                && v.space == deal.space
                && !v.deleted
                && v.merged_into.is_none()
        })
        .map(|(_, v)| v)
        .collect();
    lines.sort_by_key(|v| v.id);
    lines.dedup_by_key(|v| v.id);
    lines
}

fn manual(deal: &RecordView) -> bool {
    deal.fields.get("manual_amount") == Some(&FieldValue::Flag(true))
}

fn invalid(field: &'static str, message: String) -> NodeError {
    NodeError::Rule(RuleError::Invalid { field, message })
}

impl Repo {
    /// A deal's live lines, oldest first ([`lines_among`]).
    pub fn line_items(&self, deal: &RecordView) -> Result<Vec<RecordView>, NodeError> {
        let related = self.related(deal.id)?;
        Ok(
            lines_among(deal, related.iter().map(|(f, v)| (f.as_str(), v)))
                .into_iter()
                .cloned()
                .collect(),
        )
    }

    /// Fills a new line from its product (name, price and currency, unless
    /// given), and checks a line's currency against its deal's: a deal's
    /// lines are in its currency. `new`: the line is being made.
    pub(crate) fn settle_line(
        &self,
        space: rapport_model::SpaceId,
        fields: &mut BTreeMap<String, FieldValue>,
        new: bool,
    ) -> Result<(), NodeError> {
        let view_of = |field: &str| -> Result<Option<RecordView>, NodeError> {
            match fields.get(field).and_then(FieldValue::as_text) {
                Some(id) => match id.parse::<RecordId>() {
                    Ok(id) => self.view(id),
                    Err(_) => Ok(None),
                },
                None => Ok(None),
            }
        };
        let deal = view_of("deal")?;
        if let Some(d) = deal.as_ref().filter(|d| d.space != space) {
            return Err(invalid(
                "deal",
                format!(
                    "{} is in another space: a deal's lines are in its space (--space)",
                    d.title()
                ),
            ));
        }
        let product = view_of("product")?;
        let deal_currency = deal
            .as_ref()
            .and_then(|d| d.text("currency"))
            .map(str::to_string);
        if let Some(product) = product.as_ref().filter(|_| new) {
            if product.fields.get("active") == Some(&FieldValue::Flag(false)) {
                return Err(invalid(
                    "product",
                    format!(
                        "{} is no longer sold (active: no): pick another, or mark it active",
                        product.title()
                    ),
                ));
            }
            if !fields.contains_key("name") {
                fields.insert("name".into(), FieldValue::Text(product.title()));
            }
            if !fields.contains_key("price")
                && let (Some(price), Some(currency)) =
                    (product.text("price"), product.text("currency"))
            {
                if deal_currency.as_deref().is_some_and(|c| c != currency) {
                    return Err(invalid(
                        "price",
                        format!(
                            "{} costs {price} {currency} but the deal is in {}: give the line's price in {} (--price AMOUNT)",
                            product.title(),
                            deal_currency.as_deref().unwrap_or_default(),
                            deal_currency.as_deref().unwrap_or_default(),
                        ),
                    ));
                }
                fields.insert("price".into(), FieldValue::Text(price.into()));
                fields.insert("currency".into(), FieldValue::Text(currency.into()));
            }
        }
        if fields.contains_key("price")
            && !fields.contains_key("currency")
            && let Some(c) = &deal_currency
        {
            fields.insert("currency".into(), FieldValue::Text(c.clone()));
        }
        if let (Some(line), Some(deal)) = (
            fields.get("currency").and_then(FieldValue::as_text),
            deal_currency.as_deref(),
        ) && line != deal
        {
            return Err(invalid(
                "currency",
                format!("the deal is in {deal}: its lines are too (this one says {line})"),
            ));
        }
        Ok(())
    }

    /// [`Repo::settle_amounts`] after a write that is already stored: a
    /// failure (a full disk) is logged, not the write's, whose caller
    /// would otherwise retry it (and add a line twice). The next write of
    /// a line of the deal settles it.
    pub(crate) fn settle_deals(&self, guard: &std::sync::MutexGuard<'_, ()>, deals: Vec<ToSettle>) {
        if deals.is_empty() {
            return;
        }
        if let Err(e) = self.settle_amounts(guard, deals) {
            tracing::warn!("a deal's amount could not follow its lines: {e}");
        }
    }

    /// What an edit of `view` (to `fields`, by `edits`) adds, wherever an
    /// edit is made (`rapport edit`, an import's update): a line's currency
    /// from its deal, checked; and `manual_amount` on a deal with lines
    /// whose amount or currency is typed (its lines no longer change it;
    /// `manual_amount=no` undoes it).
    pub(crate) fn edit_of_lines(
        &self,
        view: &RecordView,
        fields: &mut BTreeMap<String, FieldValue>,
        edits: &[Edit],
    ) -> Result<Vec<Edit>, NodeError> {
        let mut more = Vec::new();
        if view.kind == Kind::LineItem {
            self.settle_line(view.space, fields, false)?;
            if fields.get("currency") != view.fields.get("currency")
                && let Some(c) = fields.get("currency")
            {
                more.push(Edit::Set("currency".into(), c.clone()));
            }
        }
        let typed = |name: &str| {
            edits
                .iter()
                .any(|e| matches!(e, Edit::Set(f, _) | Edit::Unset(f) if f == name))
        };
        if view.kind == Kind::Deal
            && (typed("amount") || typed("currency"))
            && !typed("manual_amount")
            && fields.get("manual_amount") != Some(&FieldValue::Flag(true))
            && !self.line_items(view)?.is_empty()
        {
            fields.insert("manual_amount".into(), FieldValue::Flag(true));
            more.push(Edit::Set("manual_amount".into(), FieldValue::Flag(true)));
        }
        Ok(more)
    }

    /// Sets each deal's amount and currency to its lines' total, where the
    /// deal is live, not set by hand, this device may write it and the
    /// total differs from what it says. A deal whose lines were all removed
    /// loses the amount they gave it. The caller holds the write guard.
    fn settle_amounts(
        &self,
        guard: &std::sync::MutexGuard<'_, ()>,
        deals: Vec<ToSettle>,
    ) -> Result<(), NodeError> {
        let mut left: BTreeMap<RecordId, bool> = BTreeMap::new();
        for (id, gone) in deals {
            *left.entry(id).or_default() |= gone;
        }
        let mut edits = Vec::new();
        for (id, line_left) in left {
            let Some(deal) = self.view(id)? else {
                continue;
            };
            if deal.kind != Kind::Deal
                || deal.deleted
                || deal.merged_into.is_some()
                || manual(&deal)
                || self.check_space_writable(deal.space).is_err()
            {
                continue;
            }
            let lines = self.line_items(&deal)?;
            let set = |amount: String, currency: String| {
                let mut e = Vec::new();
                if deal.text("amount") != Some(amount.as_str()) {
                    e.push(Edit::Set("amount".into(), FieldValue::Text(amount)));
                }
                if deal.text("currency") != Some(currency.as_str()) {
                    e.push(Edit::Set("currency".into(), FieldValue::Text(currency)));
                }
                e
            };
            let change = match total(lines.iter().map(|l| &l.fields)) {
                Total::One(sum, currency) => set(sum.to_string(), currency),
                // Its last line just left: the amount they gave goes. (A
                // deal never given lines, or one typed into since, keeps
                // what was typed.)
                Total::Nothing
                    if lines.is_empty() && line_left && deal.text("amount").is_some() =>
                {
                    vec![Edit::Unset("amount".into())]
                }
                // Unpriced lines say nothing; lines in several currencies
                // have no total (the deal's page says why).
                Total::Nothing | Total::Mixed(_) | Total::TooLarge => Vec::new(),
            };
            if !change.is_empty() {
                edits.push((deal, change));
            }
        }
        if !edits.is_empty() {
            self.write_edits_guarded(guard, edits)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::tests::input;
    use rapport_model::SpaceId;

    fn repo() -> (tempfile::TempDir, Repo) {
        let tmp = tempfile::tempdir().expect("tempdir");
        let repo = Repo::open(&tmp.path().join("data"), crate::OpenMode::Create).expect("open");
        (tmp, repo)
    }

    fn add(repo: &Repo, kind: Kind, pairs: &[(&str, &str)]) -> RecordView {
        repo.create(kind, SpaceId::Private, &input(pairs))
            .unwrap_or_else(|e| panic!("{kind} {pairs:?}: {e}"))
    }

    fn amount(repo: &Repo, deal: &RecordView) -> (Option<String>, Option<String>) {
        let v = repo.view(deal.id).expect("read").expect("held");
        (
            v.text("amount").map(str::to_string),
            v.text("currency").map(str::to_string),
        )
    }

    fn some(a: &str, c: &str) -> (Option<String>, Option<String>) {
        (Some(a.into()), Some(c.into()))
    }

    #[test]
    fn a_deal_with_lines_has_their_total_until_its_amount_is_set_by_hand() {
        let (_t, repo) = repo();
        add(&repo, Kind::Company, &[("name", "Acme")]);
        add(
            &repo,
            Kind::Product,
            &[("name", "Seat"), ("price", "19.99"), ("currency", "EUR")],
        );
        add(
            &repo,
            Kind::Product,
            &[("name", "Setup"), ("price", "500"), ("currency", "EUR")],
        );
        let deal = add(
            &repo,
            Kind::Deal,
            &[("title", "Rollout"), ("company", "Acme")],
        );
        let seats = add(
            &repo,
            Kind::LineItem,
            &[
                ("deal", "Rollout"),
                ("product", "Seat"),
                ("quantity", "3"),
                ("discount", "15"),
            ],
        );
        assert_eq!(seats.text("name"), Some("Seat"), "the product's name");
        assert_eq!(seats.text("price"), Some("19.99"), "and price");
        assert_eq!(
            amount(&repo, &deal),
            some("50.97", "EUR"),
            "3 × 19.99 − 15 %"
        );
        let setup = add(
            &repo,
            Kind::LineItem,
            &[("deal", "Rollout"), ("product", "Setup")],
        );
        assert_eq!(amount(&repo, &deal), some("550.97", "EUR"));
        repo.edit(&setup.id.to_string(), &input(&[("price", "450")]), &[])
            .expect("edit a line");
        assert_eq!(amount(&repo, &deal), some("500.97", "EUR"));
        repo.delete(&setup.id.to_string()).expect("delete a line");
        assert_eq!(amount(&repo, &deal), some("50.97", "EUR"));
        repo.restore(&setup.id.to_string()).expect("restore it");
        assert_eq!(amount(&repo, &deal), some("500.97", "EUR"));

        // Set by hand: lines no longer change it, and it says so.
        let by_hand = repo
            .edit(&deal.id.to_string(), &input(&[("amount", "480")]), &[])
            .expect("edit the amount");
        assert_eq!(
            by_hand.fields.get("manual_amount"),
            Some(&FieldValue::Flag(true))
        );
        repo.delete(&seats.id.to_string()).expect("delete a line");
        assert_eq!(amount(&repo, &deal), some("480.00", "EUR"));
        // Back to the lines' total.
        repo.edit(
            &deal.id.to_string(),
            &input(&[("manual_amount", "no")]),
            &[],
        )
        .expect("computed again");
        assert_eq!(amount(&repo, &deal), some("450.00", "EUR"));
        // Typed again after that: by hand again, and it stays.
        repo.edit(&deal.id.to_string(), &input(&[("amount", "470")]), &[])
            .expect("typed again");
        repo.edit(&setup.id.to_string(), &input(&[("quantity", "2")]), &[])
            .expect("a line changes");
        assert_eq!(amount(&repo, &deal), some("470.00", "EUR"));
        repo.edit(
            &deal.id.to_string(),
            &input(&[("manual_amount", "no")]),
            &[],
        )
        .expect("computed again");
        assert_eq!(amount(&repo, &deal), some("900.00", "EUR"));
        // Its last line moves to another deal: the amount it gave goes
        // with it; an amount typed into the empty deal then stays.
        let other = add(
            &repo,
            Kind::Deal,
            &[("title", "Other"), ("company", "Acme")],
        );
        repo.edit(&setup.id.to_string(), &input(&[("deal", "Other")]), &[])
            .expect("moved");
        assert_eq!(amount(&repo, &deal), (None, Some("EUR".into())));
        assert_eq!(amount(&repo, &other), some("900.00", "EUR"));
        repo.edit(&deal.id.to_string(), &input(&[("amount", "15")]), &[])
            .expect("typed into a deal with no lines");
        assert_eq!(amount(&repo, &deal), some("15.00", "EUR"));
        repo.delete(&setup.id.to_string()).expect("the last line");
        assert_eq!(amount(&repo, &other), (None, Some("EUR".into())));

        // A deal never given lines keeps what was typed.
        let typed = add(
            &repo,
            Kind::Deal,
            &[
                ("title", "Renewal"),
                ("company", "Acme"),
                ("amount", "900"),
                ("currency", "USD"),
            ],
        );
        assert_eq!(amount(&repo, &typed), some("900.00", "USD"));
    }

    #[test]
    fn a_line_is_in_its_deals_currency_and_of_a_product_still_sold() {
        let (_t, repo) = repo();
        add(&repo, Kind::Company, &[("name", "Acme")]);
        add(
            &repo,
            Kind::Product,
            &[("name", "Seat"), ("price", "20"), ("currency", "USD")],
        );
        add(
            &repo,
            Kind::Product,
            &[
                ("name", "Fax"),
                ("price", "5"),
                ("currency", "EUR"),
                ("active", "no"),
            ],
        );
        add(
            &repo,
            Kind::Deal,
            &[
                ("title", "Rollout"),
                ("company", "Acme"),
                ("amount", "100"),
                ("currency", "EUR"),
            ],
        );
        let err = repo
            .create(
                Kind::LineItem,
                SpaceId::Private,
                &input(&[("deal", "Rollout"), ("product", "Seat")]),
            )
            .expect_err("USD price on a EUR deal");
        assert!(
            err.to_string()
                .contains("Seat costs 20.00 USD but the deal is in EUR"),
            "{err}"
        );
        let err = repo
            .create(
                Kind::LineItem,
                SpaceId::Private,
                &input(&[("deal", "Rollout"), ("product", "Fax")]),
            )
            .expect_err("not sold");
        assert!(err.to_string().contains("no longer sold"), "{err}");
        let err = repo
            .create(
                Kind::LineItem,
                SpaceId::Private,
                &input(&[("deal", "Rollout"), ("quantity", "0"), ("price", "3")]),
            )
            .expect_err("nothing sold");
        assert!(err.to_string().contains("quantity"), "{err}");
        // Priced in the deal's currency: taken from it.
        let line = add(
            &repo,
            Kind::LineItem,
            &[("deal", "Rollout"), ("product", "Seat"), ("price", "18.40")],
        );
        assert_eq!(line.text("currency"), Some("EUR"));
        let err = repo
            .edit(&line.id.to_string(), &input(&[("currency", "USD")]), &[])
            .expect_err("a line in another currency");
        assert!(err.to_string().contains("the deal is in EUR"), "{err}");
        // A private line on a shared deal would add its price to a total
        // members see, and cannot see the line of: refused.
        let shared = SpaceId::Shared(repo.create_space("Joint").expect("space").id);
        repo.create(Kind::Company, shared, &input(&[("name", "Joint Co")]))
            .expect("company");
        let joint = repo
            .create(
                Kind::Deal,
                shared,
                &input(&[("title", "Joint deal"), ("company", "Joint Co")]),
            )
            .expect("deal");
        let err = repo
            .create(
                Kind::LineItem,
                SpaceId::Private,
                &input(&[("deal", &joint.id.to_string()), ("price", "3")]),
            )
            .expect_err("another space");
        assert!(err.to_string().contains("another space"), "{err}");
    }

    #[test]
    fn lines_added_on_two_nodes_at_once_give_both_the_same_total() {
        use crate::ingest::tests::{add as add_member, node, sync};
        use rapport_model::Role;
        let (_ta, a) = node();
        let (_tb, b) = node();
        let (_tc, reader) = node();
        let shared = a.create_space("Joint").expect("space");
        let space = SpaceId::Shared(shared.id);
        add_member(&a, shared.id, &b, Role::Writer);
        add_member(&a, shared.id, &reader, Role::Reader);
        let make = |kind, pairs: &[(&str, &str)]| {
            a.create(kind, space, &input(pairs))
                .unwrap_or_else(|e| panic!("{kind}: {e}"))
        };
        make(Kind::Company, &[("name", "Acme")]);
        make(
            Kind::Product,
            &[("name", "Seat"), ("price", "19.99"), ("currency", "EUR")],
        );
        let deal = make(Kind::Deal, &[("title", "Rollout"), ("company", "Acme")]);
        sync(&b, &a, space);
        sync(&reader, &a, space);
        // Each adds a line without the other's.
        a.create(
            Kind::LineItem,
            space,
            &input(&[("deal", "Rollout"), ("product", "Seat"), ("quantity", "2")]),
        )
        .expect("a's line");
        b.create(
            Kind::LineItem,
            space,
            &input(&[("deal", "Rollout"), ("product", "Seat"), ("quantity", "10")]),
        )
        .expect("b's line");
        assert_eq!(amount(&a, &deal), some("39.98", "EUR"));
        assert_eq!(amount(&b, &deal), some("199.90", "EUR"));
        sync(&a, &b, space);
        sync(&reader, &a, space);
        sync(&reader, &b, space);
        for (name, node) in [("a", &a), ("b", &b), ("reader", &reader)] {
            assert_eq!(
                amount(node, &deal),
                some("239.88", "EUR"),
                "{name}: 12 seats"
            );
        }
        // Settled: another round changes nothing.
        let changes = a.change_count();
        sync(&a, &b, space);
        sync(&reader, &a, space);
        assert_eq!(a.change_count(), changes);
    }
}
