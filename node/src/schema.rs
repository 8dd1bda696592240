//! Each space's schema on this node: read from the accepted statements of
//! its space document (the private space's from the profile), changed by
//! admins, and asked for the fields input may set.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use rapport_model::space;
use rapport_model::{
    Edit, FieldDef, FieldValue, Kind, Schema, SchemaChange, SchemaEntry, SpaceId, SpaceView,
};

use crate::{NodeError, Repo, datadir};

/// A space's schema and the space view it was folded from.
type Folded = (Arc<SpaceView>, Arc<Schema>);

/// Folded schemas, kept while the space they come from is unchanged.
#[derive(Default)]
pub(crate) struct Schemas {
    shared: Mutex<HashMap<SpaceId, Folded>>,
    private: Mutex<Option<Arc<Schema>>>,
}

impl Repo {
    /// The schema of `space`: the built-in kinds with its admins' changes.
    /// A space this node does not hold yet has the built-in schema.
    pub fn schema(&self, space: SpaceId) -> Result<Arc<Schema>, NodeError> {
        let cache = self.schemas();
        match space {
            SpaceId::Private => {
                let mut private = cache.private.lock().unwrap_or_else(PoisonError::into_inner);
                Ok(private
                    .get_or_insert_with(|| Arc::new(Schema::fold(&self.profile().schema)))
                    .clone())
            }
            SpaceId::Shared(id) => {
                let Some(view) = self.store().space_shared(id)? else {
                    return Ok(Arc::default());
                };
                let mut shared = cache.shared.lock().unwrap_or_else(PoisonError::into_inner);
                if let Some((seen, schema)) = shared.get(&space)
                    && Arc::ptr_eq(seen, &view)
                {
                    return Ok(schema.clone());
                }
                let schema = Arc::new(Schema::fold(&view.schema));
                shared.insert(space, (view, schema.clone()));
                Ok(schema)
            }
        }
    }

    /// Changes a space's schema: this device must administer the space
    /// (any user administers their private space). Refused, with the
    /// reason, when the statement would take no effect. Returns how many
    /// records a renamed choice was rewritten in (0 for other changes).
    pub fn change_schema(&self, space: SpaceId, change: SchemaChange) -> Result<usize, NodeError> {
        self.check_authoring()?;
        change.validate().map_err(NodeError::Schema)?;
        self.write_statement(space, &change)?;
        let SchemaChange::RenameChoice {
            kind,
            name,
            choice,
            to,
        } = &change
        else {
            return Ok(0);
        };
        let changed = self.rename_in_records(space, *kind, name, choice, to)?;
        tracing::info!(%space, %kind, field = %name, changed, "choice renamed in records");
        Ok(changed)
    }

    /// Records the statement: in the profile for the private space, in
    /// the space document (signed, synced) for a shared one.
    fn write_statement(&self, space: SpaceId, change: &SchemaChange) -> Result<(), NodeError> {
        let _guard = self.write_guard();
        self.schema(space)?
            .check(change)
            .map_err(NodeError::Schema)?;
        match space {
            SpaceId::Private => {
                let mut profile = self.profile_mut();
                let mut next = profile.clone();
                next.schema.push(SchemaEntry {
                    by: self.device_id().to_string(),
                    at: self.now().as_second(),
                    change: change.clone(),
                });
                datadir::save_profile(self.dir(), &next)?;
                *profile = next;
                drop(profile);
                *self
                    .schemas()
                    .private
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = None;
            }
            SpaceId::Shared(id) => {
                self.administered(id)?;
                let mut doc = self.load_doc(id)?;
                space::add_schema_change(&mut doc, change, self.now())?;
                self.write_space_doc(&mut doc, id)?;
            }
        }
        tracing::info!(%space, "schema changed");
        Ok(())
    }

    /// Rewrites `from` as `to` in the `name` field of `space`'s live
    /// records of `kind` (signed edits, synced like any other), and
    /// returns how many changed. A record that still holds `from` later
    /// (written offline meanwhile) is shown as renamed.
    fn rename_in_records(
        &self,
        space: SpaceId,
        kind: Kind,
        name: &str,
        from: &str,
        to: &str,
    ) -> Result<usize, NodeError> {
        let item = rapport_store::fields::Item::of_text(from);
        let mut changed = 0;
        for id in self.store().ids_with(kind, name, &item)? {
            let Some(v) = self.store().view(id)? else {
                continue;
            };
            if v.deleted || v.space != space || v.kind != kind {
                continue;
            }
            let value = match v.get(name) {
                Some(FieldValue::Text(t)) if t == from => FieldValue::Text(to.to_string()),
                Some(FieldValue::List(items)) if items.iter().any(|i| i == from) => {
                    let mut now: Vec<String> = Vec::new();
                    for i in items {
                        let i = if i == from { to } else { i.as_str() };
                        if !now.iter().any(|n| n == i) {
                            now.push(i.to_string());
                        }
                    }
                    FieldValue::List(now)
                }
                _ => continue,
            };
            // The value as it is: the new name may be a retired choice,
            // and the record's other values are not this change's to check.
            let edit = [Edit::Set(name.to_string(), value)];
            match self.apply(v, &edit, self.now()) {
                Ok(_) => changed += 1,
                Err(e) => tracing::warn!(%id, "a record keeps the old name of a choice: {e}"),
            }
        }
        Ok(changed)
    }

    /// The field `name` of `kind` that input may set in `space`; with no
    /// space (a filter over every space), the first space that knows it.
    pub(crate) fn field_in(
        &self,
        space: Option<SpaceId>,
        kind: Kind,
        field: &str,
    ) -> Result<&'static FieldDef, NodeError> {
        let name = field.trim().to_ascii_lowercase().replace('-', "_");
        if let Some(def) = kind.field(&name)
            && !rapport_model::custom::space_shaped(kind, &name)
        {
            return Ok(def);
        }
        let schemas = self.schemas_for(space)?;
        if space.is_none() && rapport_model::custom::space_shaped(kind, &name) {
            // A filter over every space takes any space's choices.
            let defs: Vec<&'static FieldDef> = schemas
                .iter()
                .filter_map(|s| s.field(kind, &name))
                .collect();
            if let Some(def) = rapport_model::custom::union_choices(&defs) {
                return Ok(def);
            }
        }
        if let Some(def) = schemas.iter().find_map(|s| s.field(kind, &name)) {
            return Ok(def);
        }
        if let Some(f) = schemas.iter().find_map(|s| s.custom_field(kind, &name)) {
            return Err(NodeError::Schema(format!(
                "the {kind} field `{}` is retired: its values are kept but it takes no new \
                 ones (rapport schema field restore {kind} {})",
                f.name, f.name
            )));
        }
        let mut known: Vec<&str> = Vec::new();
        for def in schemas.iter().flat_map(|s| s.fields(kind)) {
            if !known.contains(&def.name) {
                known.push(def.name);
            }
        }
        Err(NodeError::UnknownField {
            kind,
            field: field.to_string(),
            known: known.join(", ").into(),
        })
    }

    /// The fields of `kind` forms and tables show in `space`; with no
    /// space, those of every space this node holds (each name once).
    pub fn fields_in(
        &self,
        space: Option<SpaceId>,
        kind: Kind,
    ) -> Result<Vec<&'static FieldDef>, NodeError> {
        let mut out: Vec<&'static FieldDef> = Vec::new();
        for schema in self.schemas_for(space)? {
            for def in schema.fields(kind) {
                if !out.iter().any(|d| d.name == def.name) {
                    out.push(def);
                }
            }
        }
        Ok(out)
    }

    /// The kinds records may be made as in `space` (with no space, in
    /// any space this node holds): the built-in ones, then the custom
    /// ones not retired, each once, with what lists call many of them.
    pub fn kinds_in(&self, space: Option<SpaceId>) -> Result<Vec<(Kind, String)>, NodeError> {
        let mut out: Vec<(Kind, String)> = Vec::new();
        for schema in self.schemas_for(space)? {
            for kind in schema.kinds() {
                if !out.iter().any(|(k, _)| *k == kind) {
                    out.push((kind, schema.plural(kind)));
                }
            }
        }
        Ok(out)
    }

    /// The deal pipelines of `space` (with no space, of every space this
    /// node holds, each name once: the first space's definition).
    pub fn pipelines_in(
        &self,
        space: Option<SpaceId>,
    ) -> Result<Vec<rapport_model::custom::Pipeline>, NodeError> {
        let mut out: Vec<rapport_model::custom::Pipeline> = Vec::new();
        for schema in self.schemas_for(space)? {
            for p in schema.pipelines() {
                if !out.iter().any(|o| o.name == p.name) {
                    out.push(p);
                }
            }
        }
        Ok(out)
    }

    /// Checks that `kind` is one records may be made as, or listed by, in
    /// `space` (any space with none): a built-in kind, or one an admin
    /// added. For listing (`retired_too`), a retired kind still lists the
    /// records it kept.
    pub fn known_kind(
        &self,
        space: Option<SpaceId>,
        kind: Kind,
        retired_too: bool,
    ) -> Result<(), NodeError> {
        if !kind.is_custom() {
            return Ok(());
        }
        let schemas = self.schemas_for(space)?;
        if schemas.iter().any(|s| s.takes(kind)) {
            return Ok(());
        }
        if schemas.iter().any(|s| s.kind(kind).is_some()) {
            if retired_too {
                return Ok(());
            }
            return Err(NodeError::Schema(format!(
                "the kind `{kind}` is retired: its records are kept but no new ones are made \
                 (rapport schema kind restore {kind})"
            )));
        }
        let kinds: Vec<String> = self
            .kinds_in(space)?
            .into_iter()
            .map(|(k, _)| k.to_string())
            .collect();
        Err(NodeError::Schema(format!(
            "unknown record kind `{kind}`: use one of {} (rapport schema kind add {kind} \
             makes a new one)",
            kinds.join(", ")
        )))
    }

    fn schemas_for(&self, space: Option<SpaceId>) -> Result<Vec<Arc<Schema>>, NodeError> {
        match space {
            Some(space) => Ok(vec![self.schema(space)?]),
            None => {
                let mut all = vec![self.schema(SpaceId::Private)?];
                for view in self.spaces()? {
                    all.push(self.schema(SpaceId::Shared(view.id))?);
                }
                Ok(all)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use rapport_model::{FieldValue, Kind, Role, SchemaChange, SpaceId};

    use crate::Repo;
    use crate::ingest::tests::{add, node, sync};
    use crate::repo::tests::input;

    fn tier() -> SchemaChange {
        serde_json::from_str(
            r#"{"op":"add_field","kind":"company","name":"tier","type":"choice","choices":["gold","silver"]}"#,
        )
        .expect("statement")
    }

    /// The signed changes `repo` holds of one record, as a peer sends them.
    fn signed_changes(repo: &Repo, id: rapport_model::RecordId) -> Vec<Vec<u8>> {
        repo.store()
            .change_hashes(id)
            .expect("hashes")
            .iter()
            .map(|h| {
                repo.store()
                    .signed_change(h)
                    .expect("read")
                    .expect("held")
                    .encode()
            })
            .collect()
    }

    /// A (admin) and B (writer) sharing a space, in sync.
    fn admin_and_writer() -> ([tempfile::TempDir; 2], Repo, Repo, SpaceId) {
        let (ta, a) = node();
        let (tb, b) = node();
        let shared = a.create_space("Joint").expect("space");
        let space = SpaceId::Shared(shared.id);
        add(&a, shared.id, &b, Role::Writer);
        sync(&b, &a, space);
        ([ta, tb], a, b, space)
    }

    /// B receives a record holding a value of a field before the statement
    /// that defines it: B keeps the value, serves the same signed changes,
    /// keeps the value through its own edit, and shows it as the field once
    /// the statement arrives.
    #[test]
    fn a_node_on_an_older_schema_keeps_and_forwards_values_it_does_not_know() {
        let (_t, a, b, space) = admin_and_writer();
        a.change_schema(space, tier()).expect("add field");
        let orbit = a
            .create(
                Kind::Company,
                space,
                &input(&[("name", "Orbit"), ("tier", "Gold")]),
            )
            .expect("create");

        // Only the record's changes reach B, not the space's new statement.
        let hashes = a.store().change_hashes(orbit.id).expect("hashes");
        let changes = signed_changes(&a, orbit.id);
        let report = b
            .apply_remote(space, orbit.id, changes, a.device_id())
            .expect("apply");
        assert_eq!(report.applied, hashes.len());
        assert!(
            b.schema(space)
                .expect("schema")
                .field(Kind::Company, "tier")
                .is_none()
        );
        let held = b.view(orbit.id).expect("read").expect("orbit");
        assert_eq!(held.text("tier"), Some("gold"));
        assert_eq!(
            b.schema(space)
                .expect("schema")
                .misfit(Kind::Company, "tier", &FieldValue::Text("gold".into()))
                .as_deref(),
            Some("not a field of this space's schema (yet)")
        );
        assert_eq!(
            b.store().change_hashes(orbit.id).expect("hashes"),
            hashes,
            "B serves the very changes A signed"
        );
        // B's own edit keeps the value it does not know.
        b.edit(
            &orbit.id.to_string(),
            &input(&[("name", "Orbit Labs")]),
            &[],
        )
        .expect("edit");
        assert_eq!(
            b.view(orbit.id).expect("read").expect("orbit").text("tier"),
            Some("gold")
        );
        // B cannot set it yet: its schema does not have it.
        assert!(
            b.edit(&orbit.id.to_string(), &input(&[("tier", "silver")]), &[])
                .is_err()
        );

        sync(&b, &a, space);
        let schema = b.schema(space).expect("schema");
        assert!(schema.field(Kind::Company, "tier").is_some());
        assert_eq!(
            schema.misfit(Kind::Company, "tier", &FieldValue::Text("gold".into())),
            None
        );
        b.edit(&orbit.id.to_string(), &input(&[("tier", "silver")]), &[])
            .expect("now it can");
        sync(&b, &a, space);
        let on_a = a.view(orbit.id).expect("read").expect("orbit");
        assert_eq!(
            (on_a.text("name"), on_a.text("tier")),
            (Some("Orbit Labs"), Some("silver"))
        );
    }

    /// An admin adds a kind on A; B, a writer, makes records of it and
    /// refers to them from a company; A reads them. B cannot add a kind.
    /// A record of a kind whose statement has not reached a node yet is
    /// kept there; once the kind is retired, no new record is made and
    /// those there are stay.
    #[test]
    fn a_custom_kind_reaches_every_member_and_its_records_come_back() {
        let (_t, a, b, space) = admin_and_writer();
        let contract = Kind::custom("contract").expect("a kind name");
        let statement = |json: &str| -> SchemaChange { serde_json::from_str(json).expect("json") };
        a.change_schema(
            space,
            statement(r#"{"op":"add_kind","kind":"contract","title_label":"Contract number"}"#),
        )
        .expect("add kind");
        a.change_schema(
            space,
            statement(r#"{"op":"add_field","kind":"contract","name":"ends","type":"date"}"#),
        )
        .expect("add field");
        a.change_schema(
            space,
            statement(
                r#"{"op":"add_field","kind":"company","name":"contract","type":"reference","target":"contract"}"#,
            ),
        )
        .expect("add reference");
        assert!(
            b.create(contract, space, &input(&[("name", "Too early")]))
                .is_err_and(|e| e.to_string().contains("unknown record kind `contract`")),
            "B does not know the kind yet"
        );

        sync(&b, &a, space);
        assert!(
            b.kinds_in(Some(space))
                .expect("kinds")
                .iter()
                .any(|(k, p)| *k == contract && p == "contracts")
        );
        let deal = b
            .create(
                contract,
                space,
                &input(&[("name", "ACME-2027"), ("ends", "2027-03-31")]),
            )
            .expect("B makes a contract");
        let acme = b
            .create(
                Kind::Company,
                space,
                &input(&[("name", "Acme"), ("contract", "ACME-2027")]),
            )
            .expect("B refers to it by name");
        assert!(
            b.change_schema(space, statement(r#"{"op":"add_kind","kind":"project"}"#))
                .is_err(),
            "a writer cannot add a kind"
        );

        sync(&b, &a, space);
        let on_a = a.view(deal.id).expect("read").expect("the contract");
        assert_eq!(on_a.kind, contract);
        assert_eq!(
            (on_a.title(), on_a.text("ends")),
            ("ACME-2027".to_string(), Some("2027-03-31"))
        );
        let company = a.view(acme.id).expect("read").expect("acme");
        assert_eq!(company.references(), vec![("contract", deal.id)]);
        assert_eq!(a.store().live_count(contract).expect("count"), 1);

        // A record of a kind B has no statement for is kept, and shows
        // as the kind once the statement arrives.
        a.change_schema(space, statement(r#"{"op":"add_kind","kind":"project"}"#))
            .expect("add project");
        let project = Kind::custom("project").expect("a kind name");
        let apollo = a
            .create(project, space, &input(&[("name", "Apollo")]))
            .expect("create");
        b.apply_remote(
            space,
            apollo.id,
            signed_changes(&a, apollo.id),
            a.device_id(),
        )
        .expect("apply");
        assert_eq!(
            b.view(apollo.id).expect("read").expect("kept").title(),
            "Apollo"
        );
        assert!(b.known_kind(Some(space), project, false).is_err());
        sync(&b, &a, space);
        b.known_kind(Some(space), project, false)
            .expect("known now");

        a.change_schema(
            space,
            statement(r#"{"op":"retire_kind","kind":"contract"}"#),
        )
        .expect("retire");
        sync(&b, &a, space);
        assert!(
            b.create(contract, space, &input(&[("name", "Late")]))
                .is_err_and(|e| e.to_string().contains("retired"))
        );
        assert!(b.view(deal.id).expect("read").is_some_and(|v| !v.deleted));
        b.known_kind(Some(space), contract, true)
            .expect("a retired kind still lists its records");
    }

    /// An admin sets a pipeline on A; B puts a deal in it, in one of its
    /// stages (another pipeline's stage is refused), and both nodes sum
    /// it with the pipeline's probabilities. A ticket status the admin
    /// added is one B's input takes.
    #[test]
    fn a_pipeline_and_a_status_reach_every_member_and_hold_deals_to_their_stages() {
        let (_t, a, b, space) = admin_and_writer();
        let statement = |json: &str| -> SchemaChange { serde_json::from_str(json).expect("json") };
        a.change_schema(
            space,
            statement(
                r#"{"op":"set_pipeline","name":"renewals","label":"Renewals","stages":[
                    {"name":"due","probability":60},{"name":"quoted","probability":85},
                    {"name":"renewed","probability":100,"outcome":"won"},
                    {"name":"churned","probability":0,"outcome":"lost"}]}"#,
            ),
        )
        .expect("set pipeline");
        a.change_schema(
            space,
            statement(r#"{"op":"add_choice","kind":"ticket","name":"status","choice":"waiting"}"#),
        )
        .expect("add status");
        a.create(Kind::Company, space, &input(&[("name", "Acme")]))
            .expect("company");
        sync(&b, &a, space);

        let renewal = b
            .create(
                Kind::Deal,
                space,
                &input(&[
                    ("title", "Acme 2027"),
                    ("company", "Acme"),
                    ("pipeline", "Renewals pipeline"),
                    ("amount", "1000"),
                    ("currency", "EUR"),
                ]),
            )
            .expect("a deal in the pipeline");
        assert_eq!(
            (renewal.text("pipeline"), renewal.text("stage")),
            (Some("renewals"), Some("due")),
            "the pipeline by its name, and its first stage"
        );
        assert!(
            b.edit(
                &renewal.id.to_string(),
                &input(&[("stage", "proposal")]),
                &[]
            )
            .is_err_and(|e| e
                .to_string()
                .contains("not a stage of the Renewals pipeline"))
        );
        b.edit(&renewal.id.to_string(), &input(&[("stage", "quoted")]), &[])
            .expect("its own stage");
        let same = b
            .edit(
                &renewal.id.to_string(),
                &input(&[("pipeline", "Renewals")]),
                &[],
            )
            .expect("the pipeline it is in");
        assert_eq!(
            same.text("stage"),
            Some("quoted"),
            "naming its pipeline moves nothing"
        );
        b.create(
            Kind::Ticket,
            space,
            &input(&[("title", "Printer"), ("status", "Waiting")]),
        )
        .expect("the added status");

        sync(&b, &a, space);
        // A filter over every space takes the shared space's status and
        // stages (the private space has neither).
        let waiting = a
            .list(Kind::Ticket, &input(&[("status", "waiting")]), false)
            .expect("filter by an added status");
        assert_eq!(waiting.len(), 1);
        let quoted = a
            .list(Kind::Deal, &input(&[("stage", "quoted")]), false)
            .expect("filter by a pipeline's stage");
        assert_eq!(quoted.len(), 1);
        let deals = a.list(Kind::Deal, &[], false).expect("deals");
        let pipeline = a
            .pipelines_in(Some(space))
            .expect("pipelines")
            .into_iter()
            .find(|p| p.name == "renewals")
            .expect("renewals");
        let stages = crate::pipeline::summarize(&deals, &pipeline);
        let quoted = stages.iter().find(|s| s.stage == "quoted").expect("quoted");
        assert_eq!(quoted.count, 1);
        assert_eq!(quoted.currencies["EUR"].weighted, "850.00");
        let sales = crate::pipeline::summarize(&deals, &rapport_model::custom::Pipeline::sales());
        assert!(
            sales.iter().all(|s| s.count == 0),
            "the renewal is not a sales deal"
        );
    }

    /// Renaming a choice rewrites the space's records that hold it, on
    /// every member's node; a record B wrote offline with the old word
    /// keeps it, shown as renamed, until someone edits it.
    #[test]
    fn a_renamed_choice_reaches_the_records_and_an_offline_one_says_so() {
        let (_t, a, b, space) = admin_and_writer();
        a.change_schema(space, tier()).expect("add field");
        sync(&b, &a, space);
        for name in ["Orbit", "Nova"] {
            a.create(
                Kind::Company,
                space,
                &input(&[("name", name), ("tier", "silver")]),
            )
            .expect("create");
        }
        // B, offline, uses the old word.
        let late = b
            .create(
                Kind::Company,
                space,
                &input(&[("name", "Late"), ("tier", "silver")]),
            )
            .expect("create");
        let rename: SchemaChange = serde_json::from_str(
            r#"{"op":"rename_choice","kind":"company","name":"tier","choice":"silver","to":"platinum"}"#,
        )
        .expect("statement");
        assert_eq!(a.change_schema(space, rename).expect("rename"), 2);
        sync(&b, &a, space);
        for node in [&a, &b] {
            let platinum = node
                .list(Kind::Company, &input(&[("tier", "platinum")]), false)
                .expect("list");
            let mut names: Vec<String> = platinum.iter().map(|v| v.title()).collect();
            names.sort();
            assert_eq!(names, ["Nova", "Orbit"]);
            let held = node.view(late.id).expect("read").expect("late");
            assert_eq!(held.text("tier"), Some("silver"), "never changed behind B");
            let schema = node.schema(space).expect("schema");
            assert_eq!(
                schema
                    .misfit(Kind::Company, "tier", &FieldValue::Text("silver".into()))
                    .as_deref(),
                Some("`silver` was renamed `platinum`")
            );
        }
        // The old word is no longer input.
        let err = b
            .edit(&late.id.to_string(), &input(&[("tier", "silver")]), &[])
            .expect_err("old word");
        assert!(err.to_string().contains("platinum"), "{err}");

        // A retired choice renamed: its records are rewritten all the same
        // (the new name is retired too, and input still may not use it).
        let statement =
            |json: &str| -> SchemaChange { serde_json::from_str(json).expect("statement") };
        let old = a
            .create(
                Kind::Company,
                space,
                &input(&[("name", "Old"), ("tier", "gold")]),
            )
            .expect("create");
        a.change_schema(
            space,
            statement(r#"{"op":"retire_choice","kind":"company","name":"tier","choice":"gold"}"#),
        )
        .expect("retire");
        let renamed = a.change_schema(
            space,
            statement(
                r#"{"op":"rename_choice","kind":"company","name":"tier","choice":"gold","to":"legacy"}"#,
            ),
        );
        assert_eq!(renamed.expect("rename a retired choice"), 1);
        let held = a.view(old.id).expect("read").expect("old");
        assert_eq!(held.text("tier"), Some("legacy"));
    }

    /// A writer's schema change is refused before anything is signed, and
    /// a change that would take no effect says why.
    #[test]
    fn only_admins_change_a_spaces_schema_and_no_op_changes_are_refused() {
        let (_t, a, b, space) = admin_and_writer();
        let err = b.change_schema(space, tier()).expect_err("a writer");
        assert!(err.to_string().contains("you are a writer"), "{err}");
        a.change_schema(space, tier()).expect("admin");
        let clash: SchemaChange = serde_json::from_str(
            r#"{"op":"add_field","kind":"company","name":"tier","type":"number"}"#,
        )
        .expect("statement");
        let err = a.change_schema(space, clash).expect_err("a clash");
        assert!(err.to_string().contains("a type never changes"), "{err}");
        // The private space's schema is its user's, kept in the profile.
        a.change_schema(SpaceId::Private, tier()).expect("private");
        assert!(a.profile().schema.len() == 1);
    }
}
