//! Breadcrumbs: the path the user came by, carried in each link's `t`
//! query parameter (`t=k-company,01KD...`), so that every tab keeps its
//! own and a bookmarked page shows where it was found.

use rapport_model::{Kind, RecordId};
use rapport_node::Repo;

use crate::page::url_encode;

/// How many steps a trail keeps (the oldest go first).
const MAX_STEPS: usize = 6;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    Board,
    Spaces,
    Kind(Kind),
    Record(RecordId),
}

impl Step {
    fn encode(self) -> String {
        match self {
            Step::Board => "board".into(),
            Step::Spaces => "spaces".into(),
            Step::Kind(k) => format!("k-{}", k.as_str()),
            Step::Record(id) => id.to_string(),
        }
    }

    fn decode(s: &str) -> Option<Step> {
        match s {
            "board" => Some(Step::Board),
            "spaces" => Some(Step::Spaces),
            _ => match s.strip_prefix("k-") {
                Some(k) => Kind::known(k).ok().map(Step::Kind),
                None => s.parse().ok().map(Step::Record),
            },
        }
    }

    fn path(self) -> String {
        match self {
            Step::Board => "/board".into(),
            Step::Spaces => "/spaces".into(),
            Step::Kind(k) => format!("/k/{}", k.as_str()),
            Step::Record(id) => format!("/r/{id}"),
        }
    }
}

/// The steps before the current page, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Trail(Vec<Step>);

/// One breadcrumb: its label and, but for the current page, its link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Crumb {
    pub label: String,
    pub href: Option<String>,
}

impl Trail {
    /// Reads a `t` parameter; steps it does not understand are dropped.
    pub fn parse(t: Option<&str>) -> Trail {
        let steps = t
            .unwrap_or("")
            .split(',')
            .filter_map(Step::decode)
            .collect::<Vec<_>>();
        let skip = steps.len().saturating_sub(MAX_STEPS);
        Trail(steps.into_iter().skip(skip).collect())
    }

    /// The trail for links leaving a page that is `here`: a step already
    /// on the trail cuts it back there instead of making a loop.
    pub fn then(&self, here: Step) -> Trail {
        let mut steps = self.0.clone();
        if let Some(at) = steps.iter().position(|s| *s == here) {
            steps.truncate(at);
        }
        steps.push(here);
        let skip = steps.len().saturating_sub(MAX_STEPS);
        Trail(steps.into_iter().skip(skip).collect())
    }

    /// `path` with this trail attached.
    pub fn link(&self, path: &str) -> String {
        if self.0.is_empty() {
            return path.to_string();
        }
        let sep = if path.contains('?') { '&' } else { '?' };
        format!("{path}{sep}t={}", url_encode(&self.encoded()))
    }

    fn encoded(&self) -> String {
        self.0
            .iter()
            .map(|s| s.encode())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The crumbs for a page titled `current` reached by this trail:
    /// "My work" first, each step linked with the trail that led to it.
    pub fn crumbs(&self, repo: &Repo, current: &str) -> Vec<Crumb> {
        let mut out = vec![Crumb {
            label: "My work".into(),
            href: Some("/".into()),
        }];
        for (n, step) in self.0.iter().enumerate() {
            let before = Trail(self.0[..n].to_vec());
            let label = match step {
                Step::Board => "Pipeline".to_string(),
                Step::Spaces => "Spaces & sync".to_string(),
                Step::Kind(k) => crate::page::plural(*k).to_string(),
                Step::Record(id) => match repo.view(*id) {
                    Ok(Some(v)) => v.title(),
                    _ => continue,
                },
            };
            out.push(Crumb {
                label,
                href: Some(before.link(&step.path())),
            });
        }
        out.push(Crumb {
            label: current.to_string(),
            href: None,
        });
        out
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> RecordId {
        RecordId::new(n as u64, [n; 10])
    }

    #[test]
    fn a_trail_round_trips_and_cuts_loops() {
        let t = Trail::default()
            .then(Step::Kind(Kind::Company))
            .then(Step::Record(id(1)))
            .then(Step::Record(id(2)));
        let link = t.link("/r/x");
        let param = link.split("t=").nth(1).expect("has t");
        let decoded = param.replace("%2C", ",");
        assert_eq!(Trail::parse(Some(&decoded)), t);
        // Back to the company from the person: the trail is cut there.
        let back = t.then(Step::Record(id(1)));
        assert_eq!(
            back,
            Trail(vec![Step::Kind(Kind::Company), Step::Record(id(1))])
        );
    }

    #[test]
    fn garbage_is_dropped_and_length_is_bounded() {
        let t = Trail::parse(Some("k-company,nonsense,,k-no kind!,board"));
        assert_eq!(t, Trail(vec![Step::Kind(Kind::Company), Step::Board]));
        let mut long = Trail::default();
        for n in 0..20 {
            long = long.then(Step::Record(id(n)));
        }
        assert_eq!(long.0.len(), MAX_STEPS);
        assert_eq!(long.0.last(), Some(&Step::Record(id(19))));
    }
}
