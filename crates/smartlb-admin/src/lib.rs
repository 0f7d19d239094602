//! smartlb-admin
