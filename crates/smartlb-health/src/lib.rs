//! smartlb-health
