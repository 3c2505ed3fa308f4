//! Responses stream transforms.
