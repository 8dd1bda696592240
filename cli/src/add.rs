//! `rapport KIND add`: its flags come from the kind's fields in
//! `rapport_model::schema`, so that a field added there is a flag here.
//!
//! The first field (the name, title or activity type) is the positional
//! argument; every other field is `--field` (`--lost-reason` for
//! `lost_reason`), a list field in the singular and repeatable (`--email`
//! twice for `emails`). An activity's body is also `--text`; a ticket also
//! takes `--about` (a company, or a person and their company).

use clap::{Arg, ArgAction, ArgMatches, Args, Command, FromArgMatches};
use rapport_model::{FieldDef, FieldType, Kind};

use crate::Extra;

/// What `rapport KIND add` was given, for `Kind::ALL[K]`.
#[derive(Debug, Clone)]
pub struct AddArgs<const K: usize> {
    /// `(field, text)`, lists joined by commas as the parser reads them.
    pub inputs: Vec<(String, String)>,
    pub extra: Extra,
}

impl<const K: usize> AddArgs<K> {
    pub fn kind() -> Kind {
        Kind::ALL[K]
    }
}

/// The flag of a field: kebab case, lists in the singular.
pub fn flag(def: &FieldDef) -> String {
    let name = if def.ty.is_list() && def.name.len() > 1 && def.name.ends_with('s') {
        &def.name[..def.name.len() - 1]
    } else {
        def.name
    };
    name.replace('_', "-")
}

/// Values a user may start with `-`: amounts, dates (`-1d`), percentages.
fn may_look_like_flags(ty: FieldType) -> bool {
    matches!(
        ty,
        FieldType::Amount | FieldType::Percent | FieldType::Date | FieldType::DateTime
    )
}

fn value_name(ty: FieldType) -> &'static str {
    match ty {
        FieldType::Ref(_) | FieldType::Refs(_) => "REF",
        FieldType::Date => "DATE",
        FieldType::DateTime => "WHEN",
        FieldType::Email | FieldType::Emails => "EMAIL",
        FieldType::Phone | FieldType::Phones => "PHONE",
        FieldType::Amount => "AMOUNT",
        _ => "VALUE",
    }
}

fn help(def: &FieldDef) -> String {
    let mut text = def.help.to_string();
    if let FieldType::Choice(options) = def.ty {
        text = format!("{text}: {}", options.join(", "));
    }
    if let Some(default) = def.default {
        text.push_str(&format!(" [default: {default}]"));
    }
    if def.ty.is_list() {
        text.push_str(" (repeatable)");
    }
    text
}

impl<const K: usize> Args for AddArgs<K> {
    fn augment_args(mut cmd: Command) -> Command {
        let kind = Self::kind();
        for (i, def) in kind.fields().iter().enumerate() {
            let mut arg = Arg::new(def.name)
                .help(help(def))
                .value_name(value_name(def.ty))
                .allow_hyphen_values(may_look_like_flags(def.ty));
            arg = if i == 0 {
                arg.required(true).value_name(def.name.to_uppercase())
            } else {
                arg.long(flag(def))
                    .required(def.required && def.default.is_none())
            };
            if def.ty.is_list() {
                arg = arg.action(ArgAction::Append);
            }
            if kind == Kind::Activity && def.name == "body" {
                arg = arg.visible_alias("text");
            }
            cmd = cmd.arg(arg);
        }
        if kind == Kind::Ticket {
            cmd = cmd.arg(
                Arg::new("about")
                    .long("about")
                    .value_name("REF")
                    .help("the company or person it is about (a person's company is added)"),
            );
        }
        Extra::augment_args(cmd).after_help(format!(
            "A space's custom fields are set with --set NAME=VALUE; `rapport fields {kind} --space SPACE` lists them."
        ))
    }

    fn augment_args_for_update(cmd: Command) -> Command {
        Self::augment_args(cmd)
    }
}

impl<const K: usize> FromArgMatches for AddArgs<K> {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        Self::from_arg_matches_mut(&mut matches.clone())
    }

    fn from_arg_matches_mut(matches: &mut ArgMatches) -> Result<Self, clap::Error> {
        let kind = Self::kind();
        let mut inputs = Vec::new();
        let mut names: Vec<&str> = kind.fields().iter().map(|d| d.name).collect();
        if kind == Kind::Ticket {
            names.push("about");
        }
        for name in names {
            let values: Vec<String> = matches
                .try_remove_many::<String>(name)
                .map_err(|e| clap::Error::raw(clap::error::ErrorKind::ArgumentConflict, e))?
                .map(Iterator::collect)
                .unwrap_or_default();
            if !values.is_empty() {
                inputs.push((name.to_string(), values.join(",")));
            }
        }
        Ok(AddArgs {
            inputs,
            extra: Extra::from_arg_matches_mut(matches)?,
        })
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}

/// The kind of a `rapport KIND add --help` among the arguments, if that
/// is what they ask.
pub fn help_asked(args: &[String]) -> Option<Kind> {
    let help = args.iter().any(|a| a == "--help" || a == "-h");
    let add = args.iter().position(|a| a == "add")?;
    // `rapport KIND add` (KIND a built-in kind, right before `add`), or
    // `rapport add KIND` (what comes before may be the binary, or a flag's
    // value such as the data directory).
    let before = add
        .checked_sub(1)
        .and_then(|i| args.get(i))
        .and_then(|a| a.parse::<Kind>().ok())
        .filter(|k| !k.is_custom());
    let after = || args.get(add + 1).and_then(|a| a.parse::<Kind>().ok());
    help.then(|| before.or_else(after)).flatten()
}

/// The custom fields that `kind` has in each space of the data directory,
/// for `rapport KIND add --help`, from the running node or the directory;
/// `None` where there is none, or no directory yet (help never creates
/// one).
pub fn custom_fields_help(kind: Kind, dir: &std::path::Path) -> Option<String> {
    use rapport_node::ops::{Reply, Request};
    let mut exec = crate::commands::Executor::new(dir, false);
    let Ok(Reply::Spaces { spaces }) = exec.run(Request::Spaces) else {
        return None;
    };
    let every = std::iter::once(("your private space".to_string(), None)).chain(
        spaces
            .into_iter()
            .map(|s| (format!("space {}", s.name), Some(s.id.to_string()))),
    );
    let mut out = String::new();
    for (name, space) in every {
        let Ok(Reply::Schema(schema)) = exec.run(Request::Schema { space }) else {
            continue;
        };
        let fields: Vec<String> = schema
            .kinds
            .iter()
            .filter(|k| k.kind == kind)
            .flat_map(|k| &k.fields)
            .filter(|f| f.custom && f.status == "active")
            .map(|f| {
                let mut what = f.ty.clone();
                if !f.choices.is_empty() {
                    what = format!("{what}: {}", f.choices.join(", "));
                }
                if f.required {
                    what.push_str(", required");
                }
                let about = [f.label.as_str(), f.help.as_str()]
                    .into_iter()
                    .filter(|s| !s.is_empty())
                    .collect::<Vec<_>>()
                    .join(": ");
                format!("  --set {}=VALUE  {about} ({what})", f.name)
            })
            .collect();
        if !fields.is_empty() {
            out.push_str(&format!("Custom fields in {name}:\n"));
            for f in fields {
                out.push_str(&f);
                out.push('\n');
            }
        }
    }
    (!out.is_empty()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_of_every_kind_is_a_flag() {
        fn flags<const K: usize>() -> Vec<String> {
            let cmd = AddArgs::<K>::augment_args(Command::new("add"));
            cmd.get_arguments()
                .filter_map(|a| a.get_long().map(str::to_string))
                .collect()
        }
        let all = [
            flags::<0>(),
            flags::<1>(),
            flags::<2>(),
            flags::<3>(),
            flags::<4>(),
            flags::<5>(),
            flags::<6>(),
            flags::<7>(),
        ];
        for (kind, flags) in Kind::ALL.into_iter().zip(all) {
            for def in &kind.fields()[1..] {
                assert!(flags.contains(&flag(def)), "{kind}: no --{}", flag(def));
            }
        }
    }

    #[test]
    fn lists_repeat_and_join() {
        let cmd = AddArgs::<1>::augment_args(Command::new("add").no_binary_name(true));
        let m = cmd
            .try_get_matches_from([
                "Ann Baker",
                "--email",
                "ann@example.com",
                "--email",
                "ab@example.org",
                "--set",
                "owner=Dana",
            ])
            .expect("parses");
        let args = AddArgs::<1>::from_arg_matches(&m).expect("reads");
        assert_eq!(
            args.inputs,
            [
                ("name".to_string(), "Ann Baker".to_string()),
                ("emails".into(), "ann@example.com,ab@example.org".into())
            ]
        );
        assert_eq!(args.extra.sets, ["owner=Dana"]);
    }

    #[test]
    fn help_for_adding_a_kind_is_recognised_wherever_the_flags_are() {
        let args = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
        assert_eq!(
            help_asked(&args("rapport company add --help")),
            Some(Kind::Company)
        );
        assert_eq!(
            help_asked(&args("rapport --data-dir /d deal add -h")),
            Some(Kind::Deal)
        );
        assert_eq!(help_asked(&args("rapport company add Acme")), None);
        assert_eq!(help_asked(&args("rapport list --help")), None);
        let contract = Kind::custom("contract");
        assert_eq!(
            help_asked(&args("rapport --data-dir /tmp/d add contract --help")),
            contract
        );
        assert_eq!(help_asked(&args("rapport add contract -h")), contract);
        assert_eq!(help_asked(&args("rapport add deal -h")), Some(Kind::Deal));
    }
}
