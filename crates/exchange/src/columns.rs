//! Which column of a file fills which field: guessed from the headers of
//! the exports people bring (Outlook, Google Contacts, HubSpot, Salesforce,
//! Twenty, EspoCRM, plain "Name, Email, Phone, Company", and Rapport's own
//! CSV), overridden with `--map COLUMN=FIELD`, and every column left over
//! reported. A row then becomes `(field, text)` inputs, the form the CLI's
//! flags take, so an import is checked exactly as typing it would be.

use rapport_model::{FieldDef, FieldType, Kind};

use crate::locale::Locale;

/// Where a column goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// A field of the kind.
    Field(&'static str),
    /// Parts of a person's name, joined into `name` when no full name is given.
    FirstName,
    MiddleName,
    LastName,
    /// The domain of a person's company (HubSpot's "Company Domain Name").
    CompanyDomain,
    /// A Rapport record id (Rapport's own export): matches that record.
    Id,
    /// E-mail addresses of a meeting's attendees: the people with them
    /// are linked in `about` (none is created).
    Attendees,
}

impl Target {
    pub fn name(self) -> &'static str {
        match self {
            Target::Field(f) => f,
            Target::FirstName => "first_name",
            Target::MiddleName => "middle_name",
            Target::LastName => "last_name",
            Target::CompanyDomain => "company_domain",
            Target::Id => "id",
            Target::Attendees => "attendees",
        }
    }

    fn parse(kind: Kind, fields: &[&'static FieldDef], name: &str) -> Option<Self> {
        let name = name.trim().to_ascii_lowercase();
        Some(match name.as_str() {
            "id" => Target::Id,
            "first_name" if kind == Kind::Person => Target::FirstName,
            "middle_name" if kind == Kind::Person => Target::MiddleName,
            "last_name" if kind == Kind::Person => Target::LastName,
            "company_domain" if kind == Kind::Person => Target::CompanyDomain,
            "attendees" if kind == Kind::Activity => Target::Attendees,
            _ => Target::Field(fields.iter().find(|d| d.name == name)?.name),
        })
    }
}

/// Why columns cannot be mapped: the import does not start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MapError {
    #[error("--map {0}: expected COLUMN=FIELD")]
    Syntax(String),
    #[error("--map names no column `{column}`; the file's columns are: {columns}")]
    NoColumn { column: String, columns: String },
    #[error("--map: a {kind} has no field `{field}`; its fields are: {fields}")]
    NoField {
        kind: Kind,
        field: String,
        fields: String,
    },
    #[error(
        "no column gives the {field} of a {kind} (the columns are: {columns}); name one with --map COLUMN={field}"
    )]
    NoTitle {
        kind: Kind,
        field: &'static str,
        columns: String,
    },
}

/// The columns of a file mapped to a kind's fields.
#[derive(Debug, Clone)]
pub struct Columns {
    kind: Kind,
    /// The kind's fields where the rows go (its space's custom ones too).
    fields: Vec<&'static FieldDef>,
    headers: Vec<String>,
    targets: Vec<Option<Target>>,
}

/// One row as inputs, with the cells that could not be read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mapped {
    pub inputs: Vec<(String, String)>,
    /// A Rapport id to match (from an `id` column).
    pub id: Option<String>,
    /// A person's company domain, to find or create the company by.
    pub company_domain: Option<String>,
    /// A meeting's attendees' e-mail addresses.
    pub attendees: Vec<String>,
    pub problems: Vec<CellProblem>,
}

/// A cell that cannot be read: its column, its text and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CellProblem {
    pub column: String,
    pub value: String,
    pub reason: String,
}

impl Columns {
    /// Maps `headers` for `kind`: `--map` pairs first, then the known
    /// headers. A column named `-` in a pair (`--map Notes=-`) is skipped.
    pub fn guess(kind: Kind, headers: &[String], map: &[String]) -> Result<Columns, MapError> {
        Self::guess_for(kind, kind.fields().iter().collect(), headers, map)
    }

    /// [`Columns::guess`] for the fields of a space's schema: a column
    /// named like a custom field (its name or its label) fills it.
    pub fn guess_for(
        kind: Kind,
        fields: Vec<&'static FieldDef>,
        headers: &[String],
        map: &[String],
    ) -> Result<Columns, MapError> {
        let mut targets: Vec<Option<Target>> =
            headers.iter().map(|h| known(kind, &fields, h)).collect();
        // Outlook's "Title" is the honorific (Dr., Ms.) beside "Job Title".
        if kind == Kind::Person && headers.iter().any(|h| normalise(h) == "jobtitle") {
            for (h, t) in headers.iter().zip(targets.iter_mut()) {
                if normalise(h) == "title" {
                    *t = None;
                }
            }
        }
        let listing = || headers.join(", ");
        for pair in map {
            // A field name has no `=`; a column's may.
            let (column, field) = pair
                .rsplit_once('=')
                .ok_or_else(|| MapError::Syntax(pair.clone()))?;
            let column = column.trim();
            // `#3=field`: the fourth column, whatever its header (two
            // columns may share one).
            let by_index = column
                .strip_prefix('#')
                .and_then(|i| i.parse::<usize>().ok())
                .filter(|i| *i < headers.len());
            let at = by_index
                .or_else(|| headers.iter().position(|h| h.eq_ignore_ascii_case(column)))
                .ok_or_else(|| MapError::NoColumn {
                    column: column.to_string(),
                    columns: listing(),
                })?;
            targets[at] = if field.trim() == "-" {
                None
            } else {
                Some(
                    Target::parse(kind, &fields, field).ok_or_else(|| MapError::NoField {
                        kind,
                        field: field.trim().to_string(),
                        fields: field_names(kind, &fields),
                    })?,
                )
            };
        }
        let title = kind.title_field();
        let titled = targets.iter().flatten().any(|t| {
            *t == Target::Field(title) || matches!(t, Target::FirstName | Target::LastName)
        });
        if !titled {
            return Err(MapError::NoTitle {
                kind,
                field: title,
                columns: listing(),
            });
        }
        Ok(Columns {
            kind,
            fields,
            headers: headers.to_vec(),
            targets,
        })
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// `(column, field)` for every mapped column, in the file's order.
    pub fn mapped(&self) -> Vec<(String, &'static str)> {
        self.headers
            .iter()
            .zip(&self.targets)
            .filter_map(|(h, t)| t.map(|t| (h.clone(), t.name())))
            .collect()
    }

    /// The field each column fills, by position (`None`: skipped).
    pub fn targets(&self) -> Vec<Option<&'static str>> {
        self.targets.iter().map(|t| t.map(Target::name)).collect()
    }

    /// The columns nothing reads.
    pub fn unmapped(&self) -> Vec<String> {
        self.headers
            .iter()
            .zip(&self.targets)
            .filter(|(h, t)| t.is_none() && !h.is_empty())
            .map(|(h, _)| h.clone())
            .collect()
    }

    /// The inputs of one row. Several columns of one list field (Outlook's
    /// three e-mail columns) are joined; of a single-value field the first
    /// non-empty one wins. Empty cells give no input.
    pub fn row(&self, cells: &[String], locale: &Locale) -> Mapped {
        let mut out = Mapped::default();
        let mut name_parts: [Option<&str>; 3] = [None; 3];
        let mut values: Vec<(&'static str, String)> = Vec::new();
        for ((header, target), cell) in self.headers.iter().zip(&self.targets).zip(cells) {
            let Some(target) = target else { continue };
            let cell = cell.trim();
            // A cell Rapport's export made inert (`'=...`) reads back as it was.
            let cell = crate::write::unmark(cell);
            if cell.is_empty() {
                continue;
            }
            match target {
                Target::FirstName => name_parts[0] = name_parts[0].or(Some(cell)),
                Target::MiddleName => name_parts[1] = name_parts[1].or(Some(cell)),
                Target::LastName => name_parts[2] = name_parts[2].or(Some(cell)),
                Target::CompanyDomain => {
                    out.company_domain.get_or_insert_with(|| cell.to_string());
                }
                Target::Id => {
                    out.id.get_or_insert_with(|| cell.to_string());
                }
                Target::Attendees => out.attendees.extend(
                    cell.split([',', ';'])
                        .map(str::trim)
                        .filter(|a| !a.is_empty())
                        .map(str::to_string),
                ),
                Target::Field(field) => {
                    // A calendar UID that is a Rapport id (Rapport's own
                    // export) also matches that record.
                    if *field == "uid" && cell.parse::<rapport_model::RecordId>().is_ok() {
                        out.id.get_or_insert_with(|| cell.to_string());
                    }
                    let Some(def) = self.fields.iter().find(|d| d.name == *field) else {
                        continue;
                    };
                    // Outlook writes an unset date as 0/0/00.
                    if def.ty == FieldType::Date
                        && cell.chars().all(|c| matches!(c, '0' | '/' | '.' | '-'))
                    {
                        continue;
                    }
                    let text = match def.ty {
                        FieldType::Amount => locale.amount(cell),
                        FieldType::Date => locale.date(cell),
                        // Google joins values with " ::: ", others with ";".
                        t if t.is_list() => Ok(cell.replace(":::", ",").replace(';', ",")),
                        _ => Ok(cell.to_string()),
                    };
                    match text {
                        Ok(text) => match values.iter_mut().find(|(f, _)| f == field) {
                            Some((_, joined)) if def.ty.is_list() => {
                                joined.push_str(", ");
                                joined.push_str(&text);
                            }
                            Some(_) => {}
                            None => values.push((field, text)),
                        },
                        Err(reason) => out.problems.push(CellProblem {
                            column: header.clone(),
                            value: cell.to_string(),
                            reason,
                        }),
                    }
                }
            }
        }
        let title = self.kind.title_field();
        if !values.iter().any(|(f, _)| *f == title) {
            let joined: Vec<&str> = name_parts.iter().flatten().copied().collect();
            if !joined.is_empty() {
                values.insert(0, (title, joined.join(" ")));
            }
        }
        out.inputs = values
            .into_iter()
            .map(|(f, v)| (f.to_string(), v))
            .collect();
        out
    }
}

fn field_names(kind: Kind, fields: &[&'static FieldDef]) -> String {
    let mut names: Vec<&str> = fields.iter().map(|d| d.name).collect();
    names.push("id");
    if kind == Kind::Person {
        names.extend(["first_name", "middle_name", "last_name", "company_domain"]);
    }
    if kind == Kind::Activity {
        names.push("attendees");
    }
    names.join(", ")
}

/// A header as compared: lower case letters only ("E-mail 2 Address" →
/// "emailaddress"), so numbered and punctuated variants match one entry.
fn normalise(header: &str) -> String {
    header
        .chars()
        .filter(char::is_ascii_alphabetic)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// The target of a header other CRMs and address books write.
fn known(kind: Kind, fields: &[&'static FieldDef], header: &str) -> Option<Target> {
    let h = normalise(header);
    if h.is_empty() {
        return None;
    }
    let any = |names: &[&str]| names.contains(&h.as_str());
    let field = |f: &'static str| Some(Target::Field(f));
    if h == "id" || h == "rapportid" || (h == "uid" && kind != Kind::Activity) {
        return Some(Target::Id);
    }
    let guessed = match kind {
        Kind::Person => {
            if any(&[
                "name",
                "fullname",
                "displayname",
                "contactname",
                "contact",
                "fn",
            ]) {
                field("name")
            } else if any(&["firstname", "givenname", "first", "vorname"]) {
                Some(Target::FirstName)
            } else if any(&["middlename", "additionalname", "weiterevornamen"]) {
                Some(Target::MiddleName)
            } else if any(&["lastname", "familyname", "surname", "last", "nachname"]) {
                Some(Target::LastName)
            } else if any(&[
                "email",
                "emails",
                "emailaddress",
                "emailaddresses",
                "mail",
                "workemail",
                "homeemail",
                "personalemail",
                "otheremail",
                "secondaryemail",
                "additionalemailaddresses",
                "primaryemail",
                "emailsprimaryemail",
                "emailsadditionalemails",
                "emailvalue",
                // German Outlook: "E-Mail-Adresse", "E-Mail 2: Adresse".
                "emailadresse",
            ]) {
                field("emails")
            } else if any(&[
                "phone",
                "phones",
                "phonenumber",
                "mobile",
                "mobilephone",
                "mobilephonenumber",
                "businessphone",
                "homephone",
                "workphone",
                "otherphone",
                "primaryphone",
                "cellphone",
                "telephone",
                "tel",
                "phonevalue",
                "phonesprimaryphonenumber",
                "officephone",
                "mobilenumber",
                "telefongeschftlich",
                "mobiltelefon",
                "telefonprivat",
            ]) {
                field("phones")
            } else if any(&["title", "jobtitle", "position", "organizationtitle"]) {
                field("title")
            } else if any(&[
                "company",
                "companyname",
                "organization",
                "organizationname",
                "organisation",
                "accountname",
                "associatedcompany",
                "employer",
                "firma",
            ]) {
                field("company")
            } else if any(&["companydomain", "companydomainname", "companywebsite"]) {
                Some(Target::CompanyDomain)
            } else if any(&[
                "owner",
                "contactowner",
                "ownername",
                "assigneduser",
                "assignedusername",
                "assignedto",
            ]) {
                field("owner")
            } else if any(&["tags", "tag", "categories", "labels", "kategorien"]) {
                field("tags")
            } else if any(&[
                "address",
                "homeaddress",
                "businessaddress",
                "postaladdress",
                "mailingaddress",
                "mailingstreet",
                "street",
                "businessstreet",
                "homestreet",
                "address1formatted",
                "adresse",
            ]) {
                field("address")
            } else if any(&[
                "website",
                "webpage",
                "url",
                "homepage",
                "personalwebsite",
                "website1value",
                "webseite",
            ]) {
                field("website")
            } else if any(&["birthday", "birthdate", "dateofbirth", "geburtstag"]) {
                field("birthday")
            } else if any(&["notes", "note", "description", "notizen"]) {
                field("notes")
            } else {
                None
            }
        }
        Kind::Company => {
            if any(&[
                "name",
                "company",
                "companyname",
                "accountname",
                "organization",
                "organizationname",
                "organisation",
            ]) {
                field("name")
            } else if any(&[
                "domain",
                "domainname",
                "companydomain",
                "companydomainname",
                "websitedomain",
            ]) {
                field("domain")
            } else if any(&[
                "website",
                "webpage",
                "url",
                "web",
                "homepage",
                "companywebsite",
                "businesswebpage",
            ]) {
                field("website")
            } else if any(&["industry", "sector"]) {
                field("industry")
            } else if any(&[
                "address",
                "street",
                "billingaddress",
                "billingstreet",
                "businessstreet",
                "postaladdress",
                "fulladdress",
            ]) {
                field("address")
            } else if any(&[
                "phone",
                "phonenumber",
                "businessphone",
                "mainphone",
                "companyphone",
                "telephone",
                "tel",
            ]) {
                field("phone")
            } else if any(&[
                "owner",
                "companyowner",
                "accountowner",
                "assigneduser",
                "ownername",
            ]) {
                field("owner")
            } else if any(&["tags", "tag", "categories", "labels"]) {
                field("tags")
            } else {
                None
            }
        }
        Kind::Deal => {
            if any(&["dealname", "name", "opportunityname"]) {
                field("title")
            } else if any(&["dealstage", "stagename"]) {
                field("stage")
            } else if any(&["closedate", "expectedclosedate"]) {
                field("close")
            } else if any(&["associatedcompany", "accountname", "companyname"]) {
                field("company")
            } else if any(&["dealowner", "opportunityowner"]) {
                field("owner")
            } else {
                None
            }
        }
        Kind::Ticket => {
            if any(&["ticketname", "subject", "name"]) {
                field("title")
            } else if any(&["ticketstatus"]) {
                field("status")
            } else if any(&["contact", "contactname"]) {
                field("person")
            } else if any(&["ticketowner"]) {
                field("owner")
            } else {
                None
            }
        }
        Kind::Activity => {
            if any(&["attendees", "attendee", "participants"]) {
                Some(Target::Attendees)
            } else if any(&["notes", "description", "text"]) {
                field("body")
            } else if any(&["date", "start", "startdate"]) {
                field("when")
            } else if any(&["end", "enddate"]) {
                field("ends")
            } else if any(&["duedate"]) {
                field("due")
            } else if any(&["completed"]) {
                field("done")
            } else {
                None
            }
        }
        Kind::Campaign => {
            if any(&["campaignname"]) {
                field("name")
            } else if any(&["startdate"]) {
                field("start")
            } else if any(&["enddate"]) {
                field("end")
            } else {
                None
            }
        }
        // Salesforce's Product2 and PricebookEntry, HubSpot's products.
        Kind::Product => {
            if any(&["productname", "product"]) {
                field("name")
            } else if any(&["productcode", "code", "itemcode", "articlenumber"]) {
                field("sku")
            } else if any(&["unitprice", "listprice", "salesprice"]) {
                field("price")
            } else if any(&["family", "productfamily", "productline"]) {
                field("category")
            } else if any(&["isactive"]) {
                field("active")
            } else {
                None
            }
        }
        // Consent logs of newsletter tools (Mailchimp's OPTIN_TIME,
        // CONFIRM_TIME; HubSpot's subscription exports).
        Kind::Consent => {
            if any(&[
                "email",
                "emailaddress",
                "contact",
                "contactname",
                "subscriber",
            ]) {
                field("person")
            } else if any(&["subscriptiontype", "type", "channel", "list"]) {
                field("purpose")
            } else if any(&[
                "optintime",
                "confirmtime",
                "timestamp",
                "consentdate",
                "when",
            ]) {
                field("date")
            } else if any(&["optinsource", "origin", "method"]) {
                field("source")
            } else {
                None
            }
        }
        // Salesforce's OpportunityLineItem, HubSpot's line items.
        Kind::LineItem => {
            if any(&[
                "opportunity",
                "opportunityid",
                "opportunityname",
                "dealname",
            ]) {
                field("deal")
            } else if any(&["productname", "product2", "product2id", "productid"]) {
                field("product")
            } else if any(&["qty", "units"]) {
                field("quantity")
            } else if any(&["unitprice", "salesprice", "listprice"]) {
                field("price")
            } else if any(&["discountpercent", "discountpercentage"]) {
                field("discount")
            } else {
                None
            }
        }
        // A custom kind's columns map by its fields' names and labels.
        Kind::Custom(_) => None,
    };
    // A field's own name ("lost_reason", "Lost Reason") or label maps on
    // every kind.
    guessed.or_else(|| {
        fields
            .iter()
            .find(|d| normalise(d.name) == h || normalise(d.label()) == h)
            .map(|d| Target::Field(d.name))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(s: &str) -> Vec<String> {
        s.split(',').map(str::to_string).collect()
    }

    fn strings(cells: &[&str]) -> Vec<String> {
        cells.iter().map(|s| s.to_string()).collect()
    }

    const POINT: Locale = Locale {
        decimal_comma: false,
        slash_dates: None,
    };

    #[test]
    fn outlook_contacts_map_with_three_emails_joined() {
        let h = headers(
            "Title,First Name,Middle Name,Last Name,Suffix,Company,Job Title,Business Phone,Mobile Phone,E-mail Address,E-mail 2 Address,E-mail 3 Address,Categories,Notes",
        );
        let c = Columns::guess(Kind::Person, &h, &[]).expect("map");
        assert_eq!(c.unmapped(), ["Title", "Suffix"]);
        let row = c.row(
            &strings(&[
                "Dr.",
                "Ada",
                "",
                "Lovelace",
                "",
                "Analytical Engines",
                "Countess",
                "+44 20 1234",
                "+44 7700 900",
                "ada@ae.co.uk",
                "ada@home.org",
                "",
                "VIP;Math",
                "likes tea",
            ]),
            &POINT,
        );
        assert_eq!(
            row.inputs,
            [
                ("name", "Ada Lovelace"),
                ("company", "Analytical Engines"),
                ("title", "Countess"),
                ("phones", "+44 20 1234, +44 7700 900"),
                ("emails", "ada@ae.co.uk, ada@home.org"),
                ("tags", "VIP,Math"),
                ("notes", "likes tea"),
            ]
            .map(|(a, b)| (a.to_string(), b.to_string()))
        );
    }

    #[test]
    fn google_hubspot_and_plain_headers_map() {
        let google = headers(
            "Name,Given Name,Family Name,E-mail 1 - Type,E-mail 1 - Value,Phone 1 - Value,Organization 1 - Name,Organization 1 - Title",
        );
        let c = Columns::guess(Kind::Person, &google, &[]).expect("google");
        assert_eq!(c.unmapped(), ["E-mail 1 - Type"]);
        let row = c.row(
            &strings(&[
                "",
                "Grace",
                "Hopper",
                "* Work",
                "grace@navy.mil ::: gh@yale.edu",
                "+1 555 0100",
                "US Navy",
                "Rear Admiral",
            ]),
            &POINT,
        );
        assert_eq!(row.inputs[0], ("name".into(), "Grace Hopper".into()));
        assert!(
            row.inputs
                .contains(&("emails".into(), "grace@navy.mil , gh@yale.edu".into()))
        );

        let hubspot = headers(
            "Record ID,First Name,Last Name,Email,Phone Number,Company Name,Company Domain Name,Contact owner",
        );
        let c = Columns::guess(Kind::Person, &hubspot, &[]).expect("hubspot");
        assert_eq!(c.unmapped(), ["Record ID"]);
        let row = c.row(
            &strings(&["1", "K", "J", "k@x.io", "1", "X Inc", "x.io", "Dana"]),
            &POINT,
        );
        assert_eq!(row.company_domain.as_deref(), Some("x.io"));

        let plain = headers("Name,Email,Phone,Company");
        let c = Columns::guess(Kind::Person, &plain, &[]).expect("plain");
        assert!(c.unmapped().is_empty());
    }

    #[test]
    fn map_overrides_and_reports_what_is_wrong() {
        let h = headers("Kontakt,Mail,Firma");
        assert!(matches!(
            Columns::guess(Kind::Person, &h, &[]),
            Err(MapError::NoTitle { .. })
        ));
        let c = Columns::guess(
            Kind::Person,
            &h,
            &[
                "kontakt=name".into(),
                "Mail=emails".into(),
                "Firma=-".into(),
            ],
        )
        .expect("mapped");
        assert_eq!(c.unmapped(), ["Firma"]);
        assert!(matches!(
            Columns::guess(Kind::Person, &h, &["Nope=name".into()]),
            Err(MapError::NoColumn { .. })
        ));
        assert!(matches!(
            Columns::guess(Kind::Person, &h, &["Mail=shoe_size".into()]),
            Err(MapError::NoField { .. })
        ));
    }

    #[test]
    fn amounts_and_dates_are_read_in_the_files_locale() {
        let h = headers("Deal Name,Amount,Close Date,Stage,Company");
        let c = Columns::guess(Kind::Deal, &h, &[]).expect("deal");
        let comma = Locale {
            decimal_comma: true,
            slash_dates: None,
        };
        let row = c.row(
            &strings(&["Rollout", "1.234,56", "31.12.2026", "won", "Acme"]),
            &comma,
        );
        assert!(row.problems.is_empty(), "{:?}", row.problems);
        assert!(row.inputs.contains(&("amount".into(), "1234.56".into())));
        assert!(row.inputs.contains(&("close".into(), "2026-12-31".into())));
        let row = c.row(
            &strings(&["Rollout", "1234.56", "03/04/2026", "won", "Acme"]),
            &comma,
        );
        assert_eq!(row.problems.len(), 2);
        assert_eq!(row.problems[0].column, "Amount");
    }

    #[test]
    fn rapports_own_csv_maps_without_help() {
        for kind in Kind::ALL {
            let h: Vec<String> = std::iter::once("id".to_string())
                .chain(kind.fields().iter().map(|d| d.name.to_string()))
                .collect();
            let c = Columns::guess(kind, &h, &[]).expect("own");
            assert!(c.unmapped().is_empty(), "{kind}: {:?}", c.unmapped());
            for (column, field) in c.mapped() {
                assert_eq!(column, field, "{kind}");
            }
        }
    }
}
