//! [`Valid`]: a configuration checked once, so that what is built from it
//! cannot fail.

use std::ops::Deref;

/// A configuration that can say whether it is usable.
pub trait Validate {
    /// What is wrong with it (naming the setting, never a secret's value).
    type Error;

    /// Checks the settings, naming the first one that is wrong.
    fn validate(&self) -> Result<(), Self::Error>;
}

/// A configuration that passed [`Validate::validate`]: what a layer's
/// `new` takes, so that a layer that cannot be built wrong cannot fail to
/// build. The check runs once, where the configuration is loaded; the
/// layer's constructor is infallible, as tower's are.
///
/// ```
/// use tollgate_core::{Valid, Validate};
///
/// #[derive(Debug)]
/// struct Backoff { factor: f64 }
///
/// impl Validate for Backoff {
///     type Error = &'static str;
///     fn validate(&self) -> Result<(), &'static str> {
///         if self.factor >= 1.0 { Ok(()) } else { Err("factor must be ≥ 1") }
///     }
/// }
///
/// assert!(Valid::new(Backoff { factor: 0.5 }).is_err());
/// let valid = Valid::new(Backoff { factor: 2.0 }).unwrap();
/// assert_eq!(valid.factor, 2.0); // reads through to the configuration
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Valid<C>(C);

impl<C: Validate> Valid<C> {
    /// `config`, once it passed its check.
    pub fn new(config: C) -> Result<Self, C::Error> {
        config.validate()?;
        Ok(Valid(config))
    }
}

impl<C> Valid<C> {
    /// The configuration, to change and check again.
    pub fn into_inner(self) -> C {
        self.0
    }
}

impl<C> Deref for Valid<C> {
    type Target = C;

    fn deref(&self) -> &C {
        &self.0
    }
}

impl<C> AsRef<C> for Valid<C> {
    fn as_ref(&self) -> &C {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq)]
    struct Positive(i32);

    impl Validate for Positive {
        type Error = String;
        fn validate(&self) -> Result<(), String> {
            (self.0 > 0)
                .then_some(())
                .ok_or(format!("{} is not positive", self.0))
        }
    }

    #[test]
    fn only_a_config_that_passes_its_check_is_valid() {
        assert_eq!(Valid::new(Positive(0)).unwrap_err(), "0 is not positive");
        let valid = Valid::new(Positive(3)).unwrap();
        assert_eq!((*valid).0, 3, "reads through to the configuration");
        assert_eq!(valid.as_ref(), &Positive(3));
        assert_eq!(valid.clone().into_inner(), Positive(3));
    }
}
