//! Placeholder (the M-Pesa helper replaces this file).
