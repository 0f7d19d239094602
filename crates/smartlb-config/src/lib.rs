//! smartlb-config
