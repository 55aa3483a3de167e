//! `lt-prune` will own masks and pruning strategies (magnitude, random, SNIP) and the loading of
//! strategy plugins at runtime. It never trains.
//!
//! Not built yet: see the pruning issue.
