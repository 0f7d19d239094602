//! smartlb-discovery
