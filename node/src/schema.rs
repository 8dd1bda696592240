//! Each space's schema on this node: read from the accepted statements of
//! its space document (the private space's from the profile), changed by
//! admins, and asked for the fields input may set.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use rapport_model::space;
use rapport_model::{FieldDef, Kind, Schema, SchemaChange, SchemaEntry, SpaceId, SpaceView};

use crate::{NodeError, Repo, datadir};

/// Folded schemas, kept while the space they come from is unchanged.
#[derive(Default)]
pub(crate) struct Schemas {
    shared: Mutex<HashMap<SpaceId, (Arc<SpaceView>, Arc<Schema>)>>,
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
    /// reason, when the statement would take no effect.
    pub fn change_schema(
        &self,
        space: SpaceId,
        change: SchemaChange,
    ) -> Result<Arc<Schema>, NodeError> {
        self.check_authoring()?;
        change.validate().map_err(NodeError::Schema)?;
        let _guard = self.write_guard();
        self.schema(space)?
            .check(&change)
            .map_err(NodeError::Schema)?;
        match space {
            SpaceId::Private => {
                let mut profile = self.profile_mut();
                let mut next = profile.clone();
                next.schema.push(SchemaEntry {
                    by: self.device_id().to_string(),
                    at: self.now().as_second(),
                    change,
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
                space::add_schema_change(&mut doc, &change, self.now())?;
                self.write_space_doc(&mut doc, id)?;
            }
        }
        tracing::info!(%space, "schema changed");
        self.schema(space)
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
        if let Some(def) = kind.field(&name) {
            return Ok(def);
        }
        let schemas = self.schemas_for(space)?;
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
            known: known.join(", "),
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
