//! XML shape rules: repeated elements, text and CDATA, whitespace, numbers, unknown content.

use super::*;

#[test]
fn single_repeated_elements_are_vecs_of_one() {
    let a = approval(&approval_xml(
        "<SpNo>1</SpNo><SpStatus>1</SpStatus>\
         <SpRecord><Details><Approver><UserId>A</UserId></Approver><Attach>m1</Attach></Details></SpRecord>\
         <Notifyer><UserId>N</UserId></Notifyer>\
         <Comments><CommentUserInfo><UserId>C</UserId></CommentUserInfo><Attach>m2</Attach></Comments>\
         <ProcessList><NodeList><SubNodeList><UserInfo><UserId>S</UserId></UserInfo><MediaIds>m3</MediaIds></SubNodeList></NodeList></ProcessList>",
    ));
    assert_eq!(a.sp_records.len(), 1);
    assert_eq!(a.sp_records[0].details.len(), 1);
    assert_eq!(a.sp_records[0].details[0].attach, vec!["m1".to_owned()]);
    assert_eq!(a.notifyers, vec!["N".to_owned()]);
    assert_eq!(a.comments.len(), 1);
    assert_eq!(a.comments[0].attach, vec!["m2".to_owned()]);
    assert_eq!(a.process_nodes.len(), 1);
    assert_eq!(a.process_nodes[0].sub_nodes.len(), 1);
    assert_eq!(
        a.process_nodes[0].sub_nodes[0].media_ids,
        vec!["m3".to_owned()]
    );
}

#[test]
fn non_consecutive_repeated_elements_are_collected_in_order() {
    let a = approval(&approval_xml(
        "<SpRecord><SpStatus>2</SpStatus>\
           <Details><Approver><UserId>A1</UserId></Approver></Details>\
           <ApproverAttr>2</ApproverAttr>\
           <Details><Approver><UserId>A2</UserId></Approver></Details></SpRecord>\
         <Notifyer><UserId>N1</UserId></Notifyer>\
         <SpNo>9</SpNo>\
         <Comments><CommentContent>c1</CommentContent></Comments>\
         <SpRecord><SpStatus>1</SpStatus></SpRecord>\
         <ProcessList><NodeList><NodeType>1</NodeType></NodeList></ProcessList>\
         <Notifyer><UserId>N2</UserId></Notifyer>\
         <SpStatus>1</SpStatus>\
         <Comments><CommentContent>c2</CommentContent></Comments>\
         <ProcessList><NodeList><NodeType>2</NodeType></NodeList></ProcessList>",
    ));
    assert_eq!(a.sp_records.len(), 2);
    assert_eq!(a.sp_records[0].sp_status, Some(2));
    assert_eq!(a.sp_records[0].approver_attr, Some(2));
    let approvers = pluck(&a.sp_records[0].details, |d| d.approver_user_id.as_deref());
    assert_eq!(approvers, [Some("A1"), Some("A2")]);
    assert_eq!(a.sp_records[1].sp_status, Some(1));
    assert_eq!(a.notifyers, vec!["N1".to_owned(), "N2".to_owned()]);
    let comments = pluck(&a.comments, |c| c.content.as_deref());
    assert_eq!(comments, [Some("c1"), Some("c2")]);
    let node_types = pluck(&a.process_nodes, |n| n.node_type);
    assert_eq!(node_types, [Some(1), Some(2)]);
}

#[test]
fn unknown_elements_attributes_comments_are_ignored() {
    let xml = approval_xml(
        "<FutureField><Deep><Deeper a=\"1\">x</Deeper></Deep><SpNo>999</SpNo></FutureField>\
         <SpNo id=\"7\">5</SpNo><!-- comment --><?pi data?>\
         <SpStatus>2</SpStatus><Unknown/>\
         <SpRecord><NewThing>1</NewThing><Details><Approver><UserId>A</UserId><Extra>z</Extra></Approver><Mood>ok</Mood></Details></SpRecord>",
    );
    let a = approval(&xml);
    assert_eq!(a.sp_no, "5");
    assert_eq!(a.sp_status, 2);
    assert_eq!(a.sp_records[0].details[0].approver_user_id, s("A"));
    // Unknown top-level elements too.
    let o = other(&format!(
        "<xml>{HEADER}<Event>subscribe</Event><Brand-New>1</Brand-New><BizMail>x</BizMail></xml>"
    ));
    assert_eq!(o.header.event, s("subscribe"));
}

#[test]
fn cdata_and_bare_text_are_equivalent() {
    // Each vector, with its CDATA sections turned into bare text after the sections whose
    // content needs escaping in bare text were replaced by their escaped form.
    let cases: [(&str, &[(&str, &str)]); 2] = [
        ("approval_approved", &[]),
        (
            "approval_rejected",
            &[(
                "<![CDATA[驳回：预算超标 <超出 15%> & 缺少比价单]]>",
                "驳回：预算超标 &lt;超出 15%&gt; &amp; 缺少比价单",
            )],
        ),
    ];
    for (id, escapes) in cases {
        let mut bare = plaintext(id).to_owned();
        for (cdata, escaped) in escapes {
            bare = bare.replace(cdata, escaped);
        }
        let bare = bare.replace("<![CDATA[", "").replace("]]>", "");
        assert!(!bare.contains("CDATA"), "{id}");
        assert_eq!(
            parse_event(&bare).unwrap(),
            parse_event(plaintext(id)).unwrap(),
            "{id}"
        );
    }
}

#[test]
fn mixed_text_cdata_and_references_concatenate() {
    let a = approval(&approval_xml(
        "<SpNo>1</SpNo><SpStatus>1</SpStatus>\
         <SpRecord><Details><Speech>  a &amp; <![CDATA[ <b> ]]>&#x4E2D;&#25991; c  </Speech></Details></SpRecord>\
         <Comments><CommentContent><![CDATA[  kept  ]]></CommentContent></Comments>",
    ));
    // Edge whitespace of bare text is dropped, CDATA kept verbatim.
    assert_eq!(a.sp_records[0].details[0].speech, s("a &  <b> 中文 c"));
    assert_eq!(a.comments[0].content, s("  kept  "));
}

#[test]
fn line_ends_are_normalised() {
    let a = approval(&approval_xml(
        "<SpNo>1</SpNo><SpStatus>1</SpStatus><SpRecord><Details><Speech><![CDATA[l1\r\nl2\rl3]]></Speech></Details></SpRecord>",
    ));
    assert_eq!(a.sp_records[0].details[0].speech, s("l1\nl2\nl3"));
}

#[test]
fn pretty_printed_document_equals_compact_vector() {
    let compact = parse_event(plaintext("approval_approved")).unwrap();
    assert_eq!(parse_event(APPROVAL_APPROVED_PRETTY).unwrap(), compact);
    // A UTF-8 byte-order mark and trailing whitespace/comments are fine.
    let with_bom = format!("\u{feff}{}\n<!-- end -->\n", plaintext("approval_approved"));
    assert_eq!(parse_event(&with_bom).unwrap(), compact);
}

#[test]
fn numbers_may_be_surrounded_by_whitespace() {
    let xml = "<xml><ToUserName> ww1 </ToUserName><FromUserName>sys</FromUserName>\
         <CreateTime>\n 1749106583 \t</CreateTime><MsgType>event</MsgType>\
         <Event> sys_approval_change </Event><AgentID><![CDATA[ 3010040 ]]></AgentID>\
         <ApprovalInfo><SpNo><![CDATA[ 202506050012 ]]></SpNo><SpStatus><![CDATA[ 2 ]]></SpStatus>\
         <ApplyTime> 1749021127 </ApplyTime><StatuChangeEvent>\r\n2\r\n</StatuChangeEvent>\
         <SpRecord><Details><SpTime><![CDATA[\t0 ]]></SpTime></Details></SpRecord></ApprovalInfo></xml>";
    let a = approval(xml);
    assert_eq!(a.header.to_user_name, "ww1");
    assert_eq!(a.header.create_time, 1749106583);
    assert_eq!(a.header.agent_id, s("3010040"));
    assert_eq!(a.sp_no, "202506050012");
    assert_eq!(a.sp_status, 2);
    assert_eq!(a.apply_time, 1749021127);
    assert_eq!(a.status_change_event, Some(2));
    assert_eq!(a.sp_records[0].details[0].sp_time, Some(0));
}

#[test]
fn empty_elements_give_empty_values() {
    let a = approval(&approval_xml(
        "<SpNo>1</SpNo><SpStatus>1</SpStatus><SpName/><StatuChangeEvent></StatuChangeEvent>\
         <SpRecord/><Notifyer/><Comments/><ProcessList><NodeList/></ProcessList>\
         <Applyer/>",
    ));
    assert_eq!(a.sp_name, "");
    assert_eq!(a.status_change_event, None);
    assert_eq!(
        a.sp_records,
        vec![SpRecord {
            sp_status: None,
            approver_attr: None,
            details: vec![]
        }]
    );
    assert!(
        a.notifyers.is_empty(),
        "a Notifyer without UserId carries no user"
    );
    assert_eq!(a.comments.len(), 1);
    assert_eq!(a.comments[0].content, None);
    assert_eq!(a.process_nodes.len(), 1);
    assert_eq!((a.applicant_user_id, a.applicant_party), (None, None));
    assert_eq!(a.template_id, "");
    assert_eq!(a.apply_time, 0);
}

#[test]
fn item_userid_spelling_variant_is_accepted() {
    let xml = format!(
        "<xml>{HEADER}<Event>open_approval_change</Event><ApprovalInfo><ThirdNo>T1</ThirdNo>\
         <OpenSpStatus>1</OpenSpStatus><ApprovalNodes><ApprovalNode><Items>\
         <Item><ItemUserid>u1</ItemUserid></Item><Item><ItemUserId>u2</ItemUserId></Item></Items>\
         </ApprovalNode></ApprovalNodes><NotifyNodes><NotifyNode><ItemUserid>n1</ItemUserid></NotifyNode>\
         </NotifyNodes></ApprovalInfo></xml>"
    );
    let o = open_approval(&xml);
    let ids = pluck(&o.nodes[0].items, |i| i.item_user_id.as_deref());
    assert_eq!(ids, [Some("u1"), Some("u2")]);
    assert_eq!(o.notify_nodes[0].item_user_id, s("n1"));
    assert_eq!(o.approver_step, None);
    assert_eq!(o.apply_time, 0);
    assert_eq!(InboundEvent::OpenApprovalChange(o).business_key(), "T1:1");
}

#[test]
fn attach_and_media_ids_accept_repeats_and_nesting() {
    let a = approval(&approval_xml(
        "<SpNo>1</SpNo><SpStatus>1</SpStatus>\
         <SpRecord><Details><Attach>m1</Attach><Speech>x</Speech><Attach><![CDATA[ m2 ]]></Attach><Attach/></Details></SpRecord>\
         <ProcessList><NodeList><SubNodeList><MediaIds><MediaId>a</MediaId><MediaId>b</MediaId></MediaIds>\
         <MediaIds>c</MediaIds><MediaIds><![CDATA[]]></MediaIds></SubNodeList></NodeList></ProcessList>",
    ));
    assert_eq!(
        a.sp_records[0].details[0].attach,
        vec!["m1".to_owned(), "m2".to_owned()]
    );
    assert_eq!(
        a.process_nodes[0].sub_nodes[0].media_ids,
        vec!["a".to_owned(), "b".to_owned(), "c".to_owned()]
    );
}

#[test]
fn ext_attr_items_read_their_text_and_web_children() {
    let c = contact(&format!(
        "<xml>{HEADER}<Event>change_contact</Event><ChangeType>update_user</ChangeType><UserID>u</UserID>\
         <ExtAttr><Item><Name>site</Name><Type>1</Type><Text/>\
         <Web><Title>Home</Title><Url> http://example.com </Url></Web></Item>\
         <Item><Web/><Text><Value>E7</Value><Other>z</Other></Text><Type>0</Type><Name>no</Name></Item></ExtAttr></xml>"
    ));
    assert_eq!(
        c.ext_attr,
        vec![
            ExtAttrItem {
                name: s("site"),
                attr_type: Some(1),
                text_value: None,
                web_title: s("Home"),
                web_url: s("http://example.com"),
            },
            ExtAttrItem {
                name: s("no"),
                attr_type: Some(0),
                text_value: s("E7"),
                web_title: None,
                web_url: None,
            },
        ]
    );
}
