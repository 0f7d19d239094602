//! smartlb
