//! `lt-stability` will own the paper's stability measures (L2 distance and angle between trained
//! weight vectors, per layer and overall) as pure math with no IO.
//!
//! Not built yet: see the lottery/stability issue.
