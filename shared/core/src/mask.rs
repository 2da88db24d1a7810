//! Masking of personal data for logs and audit records: phone numbers, ID numbers, account names.

/// Keeps the first 3 and last 4 characters of anything 8 characters or longer (`138****8000`), the first
/// and last of anything shorter, and nothing of a 1-2 character value.
pub fn mask(value: &str) -> String {
    let chars: Vec<char> = value.chars().collect();
    let n = chars.len();
    let (head, tail) = match n {
        0..=2 => (0, 0),
        3..=7 => (1, 1),
        _ => (3, 4),
    };
    let mut out: String = chars[..head].iter().collect();
    out.push_str("****");
    out.extend(&chars[n - tail..]);
    out
}

#[cfg(test)]
mod tests {
    use super::mask;

    #[test]
    fn mask_keeps_only_the_ends() {
        assert_eq!(mask("13800138000"), "138****8000");
        assert_eq!(mask("110101199003074518"), "110****4518");
        assert_eq!(mask("abcde"), "a****e");
        assert_eq!(mask("ab"), "****");
        assert_eq!(mask("张三丰先生的账号名"), "张三丰****的账号名");
    }
}
