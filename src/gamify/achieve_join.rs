//! `JoinChallenge`: a customer opts in to an opt-in challenge. Events count from the join
//! on (in log order: every event logged after it); joining again changes nothing.

use std::collections::BTreeSet;

use super::program::Program;
use super::state::{check_time, GamifyState};
use super::{Applied, CustomerFacts, GamifyError};

impl GamifyState {
    /// Checks a join without changing anything: the challenge is an opt-in one of the
    /// program, the customer is known.
    pub fn check_join(
        &self,
        program: &Program,
        customer_id: u64,
        challenge: &str,
        facts: &dyn CustomerFacts,
    ) -> Result<usize, GamifyError> {
        let ci = program
            .achieve
            .challenges
            .iter()
            .position(|c| c.def.id == challenge)
            .ok_or_else(|| GamifyError::UnknownChallenge(challenge.to_string()))?;
        if !program.achieve.challenges[ci].def.opt_in {
            return Err(GamifyError::BadRequest {
                field: "challenge",
                rule: "an opt-in challenge (the others count every eligible customer)",
                got: challenge.to_string(),
            });
        }
        if !self.known(facts, customer_id) {
            return Err(GamifyError::UnknownCustomer(customer_id));
        }
        Ok(ci)
    }

    /// Joins `customer_id` to `challenge` at the logged time. Answers whether they had
    /// joined before (then nothing changed).
    pub fn join_challenge(
        &mut self,
        program: &Program,
        customer_id: u64,
        challenge: &str,
        facts: &dyn CustomerFacts,
        logged_at_ms: i64,
    ) -> Result<(bool, Applied), GamifyError> {
        let ci = self.check_join(program, customer_id, challenge, facts)?;
        check_time("logged_at_ms", logged_at_ms)?;
        let keys = self.keys(program)?;
        let key = keys.achieve.challenges[ci];
        let joined = |s: &GamifyState| {
            let a = s.customer(customer_id).and_then(|c| c.achieve.as_deref());
            a.and_then(|a| a.challenge(key)).is_some_and(|e| e.joined_ms.is_some())
        };
        if joined(self) {
            return Ok((true, Applied::default()));
        }
        self.clock_ms = self.clock_ms.max(logged_at_ms);
        let mut out = Applied::default();
        let mut touched = BTreeSet::new();
        self.touch(customer_id, &mut touched);
        if let Some(c) = self.customers.get_mut(&customer_id) {
            c.achieve.get_or_insert_with(Default::default).challenge_mut(key).joined_ms = Some(logged_at_ms);
        }
        self.finish(program, &keys, touched, &mut out);
        Ok((false, out))
    }
}
