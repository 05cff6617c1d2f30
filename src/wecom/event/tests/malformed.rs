//! Refused and malformed input: DTDs and entities, broken XML, missing or ambiguous fields,
//! and never a panic or an echoed payload.

use super::*;

#[test]
fn billion_laughs_doctype_is_refused() {
    let xml = r#"<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol9 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<xml><ToUserName>&lol9;</ToUserName><FromUserName>sys</FromUserName><CreateTime>1</CreateTime><MsgType>event</MsgType></xml>"#;
    assert_eq!(parse_event(xml), Err(EventParseError::Doctype));
}

#[test]
fn doctype_and_entity_declarations_are_refused_everywhere() {
    let body = format!("{HEADER}<Event>x</Event>");
    let cases = [
        format!("<!DOCTYPE xml><xml>{body}</xml>"),
        format!("<!doctype xml><xml>{body}</xml>"),
        format!(
            "\u{feff}<?xml version=\"1.0\"?>\n<!-- c --> <!DOCTYPE xml SYSTEM \"file:///etc/passwd\"><xml>{body}</xml>"
        ),
        format!("<!ENTITY xxe SYSTEM \"file:///etc/passwd\"><xml>{body}</xml>"),
        format!("<xml>{body}<!DOCTYPE x></xml>"),
        format!("<xml>{body}<Unknown><!DOCTYPE x></Unknown></xml>"),
        format!("<xml>{body}</xml>\n<!DOCTYPE x>"),
    ];
    for xml in &cases {
        assert_eq!(parse_event(xml), Err(EventParseError::Doctype), "{xml}");
    }
    // A DOCTYPE mentioned inside a comment or CDATA is just text.
    let a = approval(&approval_xml(
        "<!-- <!DOCTYPE x> --><SpNo>1</SpNo><SpStatus>1</SpStatus><SpName><![CDATA[<!DOCTYPE x>]]></SpName>",
    ));
    assert_eq!(a.sp_name, "<!DOCTYPE x>");
}

#[test]
fn undefined_entities_are_malformed_never_expanded() {
    let xml = format!("<xml>{HEADER}<Content>&xxe;</Content></xml>");
    let msg = malformed_msg(&xml);
    assert!(msg.contains("entity"), "{msg}");
    let xml = format!("<xml>{HEADER}<Event>&custom;</Event></xml>");
    malformed_msg(&xml);
}

// ----- malformed input ----------------------------------------------------

#[test]
fn broken_xml_is_malformed() {
    let cases = [
        String::new(),
        "   \n".to_owned(),
        "not xml at all".to_owned(),
        "<xml>".to_owned(),
        "<xml><ToUserName>a</ToUserName>".to_owned(),
        "<xml><ToUserName>a</FromUserName></xml>".to_owned(),
        "<xml></xml></xml>".to_owned(),
        "<xml><ToUserName><![CDATA[a</ToUserName></xml>".to_owned(),
        "<xml><ToUserName a=\"1></ToUserName></xml>".to_owned(),
        "<xml><!-- unterminated </xml>".to_owned(),
        "<?xml version=\"1.0\"".to_owned(),
        "<!-- never closed".to_owned(),
        "<![CDATA[x]]><xml/>".to_owned(),
        format!("<xml>{HEADER}</xml><xml>{HEADER}</xml>"),
        format!("<xml>{HEADER}</xml>trailing"),
        format!("<xml>{HEADER}<Content>a & b</Content></xml>"),
        format!("<xml>{HEADER}<CreateTime>1</CreateTime></xml>"),
        approval_xml("<SpNo><b>1</b></SpNo><SpStatus>1</SpStatus>"),
        approval_xml("<SpNo>1</SpNo><SpNo>2</SpNo><SpStatus>1</SpStatus>"),
        approval_xml("<SpNo>1</SpNo><SpStatus>1</SpStatus><Applyer/><Applyer/>"),
    ];
    for xml in &cases {
        malformed_msg(xml);
    }
}

#[test]
fn wrong_root_is_malformed() {
    for xml in [
        format!("<root>{HEADER}</root>"),
        format!("<xmlx>{HEADER}</xmlx>"),
        format!("<XML>{HEADER}</XML>"),
        format!("<?xml version=\"1.0\"?><Envelope>{HEADER}</Envelope>"),
    ] {
        assert!(malformed_msg(&xml).contains("root"), "{xml}");
    }
}

#[test]
fn malformed_messages_do_not_echo_payload() {
    let secret = "SECRET-PAYLOAD-42";
    let cases = [
        format!("{secret}<xml/>"),
        format!("<xml>{HEADER}<{secret}></xml>"),
        format!("<xml>{HEADER}</{secret}></xml>"),
        format!("<xml>{HEADER}<Content>&{secret};</Content></xml>"),
        format!("<{secret}>{HEADER}</{secret}>"),
        approval_xml(&format!("<SpNo>1</SpNo><SpStatus>{secret}</SpStatus>")),
        approval_xml(&format!(
            "<SpNo>1</SpNo><SpStatus>1</SpStatus><SpTime>{secret}</SpTime><SpRecord><Details><SpTime>{secret}</SpTime></Details></SpRecord>"
        )),
        approval_xml(&format!("<SpNo><{secret}/></SpNo>")),
        format!("<xml>{HEADER}<A x=\"{secret}></A></xml>"),
    ];
    for xml in &cases {
        let msg = malformed_msg(xml);
        assert!(!msg.contains(secret), "{msg}");
        assert!(!msg.is_empty());
    }
}

#[test]
fn approval_without_sp_no_is_malformed() {
    let msg = malformed_msg(&approval_xml("<SpName>x</SpName><SpStatus>2</SpStatus>"));
    assert!(msg.contains("SpNo"), "{msg}");
    malformed_msg(&approval_xml(
        "<SpNoStr> </SpNoStr><SpNo></SpNo><SpStatus>2</SpStatus>",
    ));
    // Other essential parts.
    let msg = malformed_msg(&approval_xml("<SpNo>1</SpNo>"));
    assert!(msg.contains("SpStatus"), "{msg}");
    let msg = malformed_msg(&approval_xml("<SpNo>1</SpNo><SpStatus>two</SpStatus>"));
    assert!(msg.contains("SpStatus") && msg.contains("integer"), "{msg}");
    malformed_msg(&approval_xml("<SpNo>1</SpNo><SpStatus>-2</SpStatus>"));
    let msg = malformed_msg(&format!(
        "<xml>{HEADER}<Event>sys_approval_change</Event></xml>"
    ));
    assert!(msg.contains("ApprovalInfo"), "{msg}");
    // A bad non-essential number is reported too, with its path.
    let msg = malformed_msg(&approval_xml(
        "<SpNo>1</SpNo><SpStatus>1</SpStatus><SpRecord><Details><SpTime>soon</SpTime></Details></SpRecord>",
    ));
    assert!(msg.contains("Details/SpTime"), "{msg}");
}

#[test]
fn sp_no_str_is_preferred_and_sp_no_is_the_fallback() {
    let a = approval(&approval_xml(
        "<SpNoStr>202506050099</SpNoStr><SpNo>1</SpNo><SpStatus>1</SpStatus>",
    ));
    assert_eq!(a.sp_no, "202506050099");
    let a = approval(&approval_xml(
        "<SpNo>202506050012</SpNo><SpStatus>4</SpStatus>",
    ));
    assert_eq!(a.sp_no, "202506050012");
    let a = approval(&approval_xml(
        "<SpNoStr></SpNoStr><SpNo>202506050013</SpNo><SpStatus>7</SpStatus>",
    ));
    assert_eq!(
        InboundEvent::ApprovalChange(a).business_key(),
        "202506050013:7"
    );
    // Longer than u64 would allow: still a string.
    let a = approval(&approval_xml(
        "<SpNoStr>123456789012345678901234567890</SpNoStr><SpStatus>1</SpStatus>",
    ));
    assert_eq!(a.sp_no, "123456789012345678901234567890");
}

#[test]
fn missing_header_fields_are_malformed() {
    assert_each_names_missing(
        str::to_owned,
        &[
            (
                "<xml><FromUserName>a</FromUserName><CreateTime>1</CreateTime><MsgType>text</MsgType></xml>",
                "ToUserName",
            ),
            (
                "<xml><ToUserName>a</ToUserName><CreateTime>1</CreateTime><MsgType>text</MsgType></xml>",
                "FromUserName",
            ),
            (
                "<xml><ToUserName>a</ToUserName><FromUserName>a</FromUserName><MsgType>text</MsgType></xml>",
                "CreateTime",
            ),
            (
                "<xml><ToUserName>a</ToUserName><FromUserName>a</FromUserName><CreateTime>1</CreateTime></xml>",
                "MsgType",
            ),
        ],
    );
}

#[test]
fn contact_events_need_their_subject() {
    let base = |rest: &str| format!("<xml>{HEADER}<Event>change_contact</Event>{rest}</xml>");
    assert_each_names_missing(
        base,
        &[
            ("<UserID>u</UserID>", "ChangeType"),
            ("<ChangeType>update_user</ChangeType>", "UserID"),
            ("<ChangeType>delete_party</ChangeType>", "Id"),
            ("<ChangeType>update_tag</ChangeType>", "TagId"),
        ],
    );

    let c = contact(&base(
        "<ChangeType>update_user</ChangeType><UserID>u1</UserID><NewUserID>u2</NewUserID><Department> 1 ,, 2 </Department>",
    ));
    assert_eq!(c.new_user_id, s("u2"));
    assert_eq!(c.department, vec!["1".to_owned(), "2".to_owned()]);
    assert_eq!(
        InboundEvent::ContactChange(c).business_key(),
        "update_user:u1"
    );

    let c = contact(&base(
        "<ChangeType>create_party</ChangeType><Id>7</Id><Name>研发部</Name><ParentId>1</ParentId><Order>100</Order>",
    ));
    assert_eq!(
        (c.id.as_deref(), c.parent_id.as_deref(), c.order.as_deref()),
        (Some("7"), Some("1"), Some("100"))
    );
    assert!(c.department.is_empty());
    assert_eq!(
        InboundEvent::ContactChange(c).business_key(),
        "create_party:7"
    );

    let c = contact(&base(
        "<ChangeType>update_tag</ChangeType><TagId>3</TagId><AddUserItems>a,b</AddUserItems><DelPartyItems>4</DelPartyItems>",
    ));
    assert_eq!(c.add_user_items, s("a,b"));
    assert_eq!(c.del_party_items, s("4"));
    assert_eq!(
        InboundEvent::ContactChange(c).business_key(),
        "update_tag:3"
    );

    let c = contact(&base("<ChangeType>future_change</ChangeType>"));
    assert_eq!(
        InboundEvent::ContactChange(c).business_key(),
        "future_change:"
    );
}

#[test]
fn external_contact_events_need_both_ids() {
    let base =
        |rest: &str| format!("<xml>{HEADER}<Event>change_external_contact</Event>{rest}</xml>");
    assert_each_names_missing(
        base,
        &[
            (
                "<ChangeType>del_follow_user</ChangeType><UserID>u</UserID>",
                "ExternalUserID",
            ),
            (
                "<ChangeType>del_follow_user</ChangeType><ExternalUserID>e</ExternalUserID>",
                "UserID",
            ),
        ],
    );
    let e = external_contact(&base(
        "<ChangeType>transfer_fail</ChangeType><UserID>u</UserID><ExternalUserID>e</ExternalUserID><FailReason>customer_refused</FailReason><Source>DELETE_BY_TRANSFER</Source>",
    ));
    assert_eq!(e.fail_reason, s("customer_refused"));
    assert_eq!(e.source, s("DELETE_BY_TRANSFER"));
    assert_eq!(e.welcome_code, None);
    assert_eq!(
        InboundEvent::ExternalContactChange(e).business_key(),
        "transfer_fail:u:e"
    );
}

#[test]
fn schema_problems_only_break_events_that_use_the_fields() {
    // Contact-only fields with an unexpected shape do not break an
    // unrelated event ...
    let weird =
        "<Status><Code>1</Code></Status><Name>a</Name><Name>b</Name><ApprovalInfo/><ApprovalInfo/>";
    let o = other(&format!(
        "<xml>{HEADER}<Event>living_status_change</Event>{weird}</xml>"
    ));
    assert_eq!(o.header.event, s("living_status_change"));
    // ... but do break a typed event ...
    let msg = malformed_msg(&format!(
        "<xml>{HEADER}<Event>change_contact</Event><ChangeType>update_user</ChangeType><UserID>u</UserID>{weird}</xml>"
    ));
    assert!(msg.contains("Status") && msg.contains("text only"), "{msg}");
    let msg = malformed_msg(&approval_xml(
        "<SpNo>1</SpNo><SpStatus>1</SpStatus><SpStatus>2</SpStatus>",
    ));
    assert!(
        msg.contains("SpStatus") && msg.contains("more than once"),
        "{msg}"
    );
    let msg = malformed_msg(&approval_xml(
        "<SpNo>1</SpNo><SpStatus>1</SpStatus><SpRecord><Details><Approver/><Approver/></Details></SpRecord>",
    ));
    assert!(msg.contains("Details/Approver"), "{msg}");
    // ... and header fields are always strict.
    let msg = malformed_msg(&format!(
        "<xml>{HEADER}<Event>subscribe</Event><MsgId>1</MsgId><MsgId>2</MsgId></xml>"
    ));
    assert!(msg.contains("MsgId"), "{msg}");
    let msg = malformed_msg(
        "<xml><ToUserName><a>x</a></ToUserName><FromUserName>u</FromUserName><CreateTime>1</CreateTime><MsgType>text</MsgType></xml>",
    );
    assert!(msg.contains("ToUserName"), "{msg}");
}

#[test]
fn other_events_business_key_and_change_type() {
    let o = other(&format!(
        "<xml>{HEADER}<Event>change_external_chat</Event><ChangeType>update</ChangeType></xml>"
    ));
    assert_eq!(o.change_type, s("update"));
    assert_eq!(
        InboundEvent::Other(o).business_key(),
        "change_external_chat:1749106583"
    );
    let o = other(
        "<xml><ToUserName>c</ToUserName><FromUserName>u</FromUserName><CreateTime>5</CreateTime><MsgType>image</MsgType><MsgId> </MsgId></xml>",
    );
    assert_eq!(o.msg_id, None);
    assert_eq!(InboundEvent::Other(o).business_key(), "image:5");
}

#[test]
fn event_kind_strings_round_trip() {
    let all = [
        (EventKind::ApprovalChange, "approval_change"),
        (EventKind::OpenApprovalChange, "open_approval_change"),
        (EventKind::ContactChange, "contact_change"),
        (EventKind::ExternalContactChange, "external_contact_change"),
        (EventKind::Other, "other"),
    ];
    for (kind, name) in all {
        assert_eq!(kind.as_str(), name);
        assert_eq!(kind.to_string(), name);
        assert_eq!(name.parse::<EventKind>(), Ok(kind));
    }
    assert_eq!("Other".parse::<EventKind>(), Err(UnknownEventKind));
    assert_eq!("".parse::<EventKind>(), Err(UnknownEventKind));
    assert_eq!(
        parse_event(plaintext("contact_create_user"))
            .unwrap()
            .kind(),
        EventKind::ContactChange
    );
    assert_eq!(
        parse_event(plaintext("open_approval_change"))
            .unwrap()
            .kind(),
        EventKind::OpenApprovalChange
    );
}

#[test]
fn no_panic_on_truncated_or_mutated_input() {
    // Every strict prefix of a valid document is an error (never a panic).
    for doc in [
        plaintext("approval_approved"),
        plaintext("open_approval_change"),
        plaintext("contact_create_user"),
    ] {
        for (i, _) in doc.char_indices().skip(1) {
            assert!(parse_event(&doc[..i]).is_err(), "prefix {i} accepted");
        }
    }
    // Deterministic pseudo-random single-byte mutations (ASCII only, so the
    // input stays valid UTF-8): must return, Ok or Err.
    let specials = b"<>/!?&;[]\"'= -x0";
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut bytes = plaintext("approval_rejected").as_bytes().to_vec();
    for _ in 0..3000 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let pos = (state % bytes.len() as u64) as usize;
        if bytes[pos].is_ascii() {
            let saved = bytes[pos];
            bytes[pos] = specials[(state >> 32) as usize % specials.len()];
            if let Ok(text) = std::str::from_utf8(&bytes) {
                let _ = parse_event(text);
            }
            bytes[pos] = saved;
        }
    }
    // Deep nesting inside an unknown element is skipped iteratively.
    let deep = format!(
        "<xml>{HEADER}{}{}</xml>",
        "<a>".repeat(100_000),
        "</a>".repeat(100_000)
    );
    assert_eq!(parse_event(&deep).unwrap().kind(), EventKind::Other);
    let unclosed = format!("<xml>{HEADER}{}", "<a>".repeat(10_000));
    malformed_msg(&unclosed);
}

/// Timing-free sanity check: repeated parsing is deterministic and the
/// typed event serialises with the WeCom element names.
#[test]
fn sanity_repeated_parse_is_stable_and_serialises() {
    let first = parse_event(plaintext("approval_approved")).unwrap();
    for _ in 0..100 {
        assert_eq!(parse_event(plaintext("approval_approved")).unwrap(), first);
    }
    let json = serde_json::to_value(&first).unwrap();
    let a = &json["ApprovalChange"];
    assert_eq!(a["SpNo"], "202506050012");
    assert_eq!(a["SpStatus"], 2);
    assert_eq!(a["StatuChangeEvent"], 2);
    assert_eq!(a["ToUserName"], "ww7a3c1e5b9d2f4a68");
    assert_eq!(a["Notifyer"][0], "WangWu");
    assert_eq!(
        a["SpRecord"][1]["Details"][1]["ApproverUserId"],
        "ZhaoKuaiJi"
    );
    assert_eq!(a["NodeList"][1]["SubNodeList"][0]["Sptime"], 1749106582);
    assert_eq!(
        serde_json::to_value(EventKind::ExternalContactChange).unwrap(),
        "external_contact_change"
    );
}

#[test]
fn table_dispatched_leaves_name_their_full_path_when_repeated() {
    // A nested leaf is named by its path in the table, not just its element name.
    let msg = malformed_msg(&approval_xml(
        "<SpNo>1</SpNo><SpStatus>1</SpStatus><SpRecord><SpStatus>1</SpStatus><SpStatus>2</SpStatus></SpRecord>",
    ));
    assert_eq!(msg, "element SpRecord/SpStatus occurs more than once");
    let msg = malformed_msg(&approval_xml(
        "<SpNo>1</SpNo><SpStatus>1</SpStatus><ProcessList><NodeList><SubNodeList><SpYj>1</SpYj><SpYj>2</SpYj></SubNodeList></NodeList></ProcessList>",
    ));
    assert_eq!(msg, "element SubNodeList/SpYj occurs more than once");
    // The two spellings of the approver's id fill one slot.
    let xml = format!(
        "<xml>{HEADER}<Event>open_approval_change</Event><ApprovalInfo><ThirdNo>t1</ThirdNo>\
         <OpenSpStatus>1</OpenSpStatus><ApprovalNodes><ApprovalNode><Items><Item>\
         <ItemUserid>u1</ItemUserid><ItemUserId>u2</ItemUserId></Item></Items></ApprovalNode>\
         </ApprovalNodes></ApprovalInfo></xml>"
    );
    assert_eq!(
        malformed_msg(&xml),
        "element ItemUserId occurs more than once"
    );
    // An element of the same name at another level is not taken for a table entry.
    let a = approval(&approval_xml(
        "<SpNo>1</SpNo><SpStatus>1</SpStatus><Applyer><SpName>x</SpName><UserId>u</UserId></Applyer>",
    ));
    assert_eq!(a.sp_name, "");
    assert_eq!(a.applicant_user_id, s("u"));
}
