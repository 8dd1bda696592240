//! List filters: `field=value` and its comparisons, how a record
//! satisfies one, and which index answers it.
//!
//! The comparison is the character before the `=` (so `amount>=1000`
//! reads the same as a CLI `--where`, a web filter box or a URL query,
//! where it arrives as the parameter `amount>` with the value `1000`):
//!
//! | filter         | keeps a record whose value                          |
//! |----------------|-----------------------------------------------------|
//! | `field=v`      | equals v (lists: contain it; references: by name)   |
//! | `field!=v`     | does not equal v, or is missing                     |
//! | `field>=v`     | is v or more (numbers, money, dates: by value)      |
//! | `field<=v`     | is v or less                                        |
//! | `field^=v`     | begins with v (any case)                            |
//! | `field~=v`     | contains v (any case)                               |

use rapport_model::{FieldDef, FieldType, FieldValue, RecordView};
use rapport_store::fields::Item;

use crate::NodeError;

/// How a filter compares a record's value with its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compare {
    Equal,
    NotEqual,
    AtLeast,
    AtMost,
    StartsWith,
    Contains,
}

impl Compare {
    /// The field a filter names and its comparison, from the part before
    /// the `=`: `amount>` is `amount` and `AtLeast`.
    pub fn split(name: &str) -> (&str, Compare) {
        let compare = match name.chars().last() {
            Some('!') => Compare::NotEqual,
            Some('>') => Compare::AtLeast,
            Some('<') => Compare::AtMost,
            Some('^') => Compare::StartsWith,
            Some('~') => Compare::Contains,
            _ => return (name.trim(), Compare::Equal),
        };
        (name[..name.len() - 1].trim(), compare)
    }

    fn operator(self) -> &'static str {
        match self {
            Compare::Equal => "=",
            Compare::NotEqual => "!=",
            Compare::AtLeast => ">=",
            Compare::AtMost => "<=",
            Compare::StartsWith => "^=",
            Compare::Contains => "~=",
        }
    }
}

/// One filter, its value parsed for its field.
#[derive(Debug, Clone)]
pub struct Filter {
    pub field: &'static str,
    /// Whether the field holds a list (each bound then holds for some
    /// item, not necessarily the same one).
    pub list: bool,
    pub test: Test,
}

/// What a record's value must satisfy.
#[derive(Debug, Clone)]
pub enum Test {
    Equal(FieldValue),
    NotEqual(FieldValue),
    /// At least (`AtLeast`) or at most the item, compared as the field
    /// index orders values; money compares in its currency when the
    /// filter names one.
    Bound {
        compare: Compare,
        item: Item,
        currency: Option<String>,
    },
    /// Lower case.
    StartsWith(String),
    /// Lower case.
    Contains(String),
}

impl Filter {
    /// A filter on `def`, its value already split from its comparison;
    /// `parse` reads a value as the field's type (an equality's value,
    /// a bound).
    pub fn new(
        def: &FieldDef,
        compare: Compare,
        raw: &str,
        parse: impl Fn(&str) -> Result<FieldValue, NodeError>,
    ) -> Result<Filter, NodeError> {
        let refuse = |why: &str| {
            Err(NodeError::Filter(format!(
                "`{}{}{raw}`: {why}",
                def.name,
                compare.operator()
            )))
        };
        let test = match compare {
            Compare::Equal => Test::Equal(parse(raw)?),
            Compare::NotEqual => Test::NotEqual(parse(raw)?),
            Compare::AtLeast | Compare::AtMost => {
                if def.ty.ref_kinds().is_some() {
                    return refuse("a reference compares by = or != (a name or an id)");
                }
                // Money may be bounded without a currency: in any currency.
                let (value, currency) = match def.ty {
                    FieldType::Money if !raw.bytes().any(|b| b.is_ascii_alphabetic()) => {
                        (FieldValue::Text(raw.trim().to_string()), None)
                    }
                    FieldType::Money => {
                        let v = parse(raw)?;
                        let code = v
                            .as_text()
                            .and_then(|t| t.rsplit_once(' '))
                            .map(|(_, c)| c.to_string());
                        (v, code)
                    }
                    _ => (parse(raw)?, None),
                };
                let Some(item) = Item::of(&value).into_iter().next() else {
                    return refuse("a bound needs one value");
                };
                if def.ty == FieldType::Money && !matches!(item, Item::Number(_)) {
                    return refuse("a bound on money is an amount, e.g. 1000 or 1000 EUR");
                }
                Test::Bound {
                    compare,
                    item,
                    currency,
                }
            }
            Compare::StartsWith | Compare::Contains => {
                if def.ty.ref_kinds().is_some() {
                    return refuse("a reference compares by = or != (a name or an id)");
                }
                if is_numeric(def.ty) {
                    return refuse("numbers compare by value: use >= and <=");
                }
                let text = raw.trim().to_lowercase();
                if text.is_empty() {
                    return refuse("give some text to look for");
                }
                if compare == Compare::StartsWith {
                    Test::StartsWith(text)
                } else {
                    Test::Contains(text)
                }
            }
        };
        Ok(Filter {
            field: def.name,
            list: def.ty.is_list(),
            test,
        })
    }

    /// Whether the record satisfies the filter.
    pub fn keeps(&self, v: &RecordView) -> bool {
        let have = v.get(self.field);
        match &self.test {
            Test::Equal(want) => equals(have, want),
            Test::NotEqual(want) => !equals(have, want),
            Test::Bound {
                compare,
                item,
                currency,
            } => {
                let Some(have) = have else { return false };
                let in_currency = |text: &str| {
                    currency
                        .as_deref()
                        .is_none_or(|c| text.rsplit_once(' ').is_some_and(|(_, code)| code == c))
                };
                let texts = texts(have);
                Item::of(have).iter().zip(texts.iter()).any(|(have, text)| {
                    let same_sort =
                        matches!(have, Item::Number(_)) == matches!(item, Item::Number(_));
                    let within = match compare {
                        Compare::AtMost => have <= item,
                        _ => have >= item,
                    };
                    same_sort && within && in_currency(text)
                })
            }
            Test::StartsWith(t) => have.is_some_and(|h| {
                texts(h)
                    .iter()
                    .any(|s| s.to_lowercase().starts_with(t.as_str()))
            }),
            Test::Contains(t) => have.is_some_and(|h| {
                texts(h)
                    .iter()
                    .any(|s| s.to_lowercase().contains(t.as_str()))
            }),
        }
    }
}

/// The types whose values are numbers (compared by value, never as text).
fn is_numeric(ty: FieldType) -> bool {
    matches!(
        ty,
        FieldType::Number
            | FieldType::Money
            | FieldType::Amount
            | FieldType::Percent
            | FieldType::Flag
    )
}

/// A value's texts, one per item, in `Item::of`'s order.
fn texts(value: &FieldValue) -> Vec<String> {
    match value {
        FieldValue::List(l) => l.clone(),
        other => vec![other.to_string()],
    }
}

/// Whether a record's value equals a filter's: case-insensitive for
/// text, and for lists, containing every wanted item.
fn equals(have: Option<&FieldValue>, want: &FieldValue) -> bool {
    let eq = |a: &str, b: &str| a.to_lowercase() == b.to_lowercase();
    match (have, want) {
        (Some(FieldValue::List(h)), FieldValue::List(w)) => {
            w.iter().all(|w| h.iter().any(|h| eq(h, w)))
        }
        (Some(FieldValue::List(h)), FieldValue::Text(w)) => h.iter().any(|h| eq(h, w)),
        (Some(FieldValue::Text(h)), FieldValue::Text(w)) => eq(h, w),
        (Some(h), w) => h == w,
        (None, _) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_character_before_the_equals_sign_is_the_comparison() {
        assert_eq!(Compare::split("amount>"), ("amount", Compare::AtLeast));
        assert_eq!(
            Compare::split("close_date<"),
            ("close_date", Compare::AtMost)
        );
        assert_eq!(Compare::split("stage!"), ("stage", Compare::NotEqual));
        assert_eq!(Compare::split("name^"), ("name", Compare::StartsWith));
        assert_eq!(Compare::split("name ~"), ("name", Compare::Contains));
        assert_eq!(Compare::split("name"), ("name", Compare::Equal));
    }
}
