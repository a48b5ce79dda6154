//! Explain: the plan as a tree with estimated and actual cardinalities per node.

use serde::Serialize;

use super::eval::count_node;
use super::plan::{Node, Plan};
use crate::store::Dataset;

#[derive(Clone, Debug, Serialize)]
pub struct ExplainNode {
    pub op: String,
    pub estimated: u64,
    pub actual: u64,
    pub children: Vec<ExplainNode>,
}

/// Explains a plan; counts every node (a full evaluation per node: a diagnostic, not a
/// hot path).
pub fn explain(ds: &Dataset, plan: &Plan) -> ExplainNode {
    node(ds, &plan.root)
}

fn node(ds: &Dataset, n: &Node) -> ExplainNode {
    let (op, children) = match n {
        Node::And(k) => ("AND".to_string(), k.iter().map(|c| node(ds, c)).collect()),
        Node::Or(k) => ("OR".to_string(), k.iter().map(|c| node(ds, c)).collect()),
        Node::Const(b) => ((if *b { "TRUE" } else { "FALSE" }).to_string(), vec![]),
        Node::Leaf(l) => (l.label.clone(), vec![]),
        Node::Segment { id, negated, .. } => {
            (format!("{}in_segment('{id}')", if *negated { "NOT " } else { "" }), vec![])
        }
    };
    ExplainNode { op, estimated: n.estimate(ds), actual: count_node(ds, n), children }
}

impl ExplainNode {
    /// An indented text rendering.
    pub fn render(&self) -> String {
        let mut s = String::new();
        self.render_into(&mut s, 0);
        s
    }

    fn render_into(&self, s: &mut String, depth: usize) {
        s.push_str(&format!(
            "{}{}  (est {}, actual {})\n",
            "  ".repeat(depth),
            self.op,
            self.estimated,
            self.actual
        ));
        for c in &self.children {
            c.render_into(s, depth + 1);
        }
    }
}
